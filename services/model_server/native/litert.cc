// Interpreter over the LiteRt C API of the ai-edge-litert wheel's libLiteRt.so:
// the same XNNPack kernels as the Python Interpreter (outputs bit-identical),
// driven without an interpreter lock. litert_c.h pins the declarations to the
// wheel's 2.3.0 ABI; a wheel upgrade must re-check them (tests compare outputs).
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "services/model_server/native/litert_c.h"
#include "services/model_server/native/runtime.h"

namespace s3ml::dataplane {
namespace {

constexpr uintptr_t kHostAlignment = 64;  // LITERT_HOST_MEMORY_BUFFER_ALIGNMENT

void Check(LiteRtStatus status, const char* what) {
  if (status != kLiteRtStatusOk) {
    throw std::runtime_error(std::string("LiteRt ") + what + " failed with status " + std::to_string(status));
  }
}

LiteRtEnvironment NewEnvironment() {
  LiteRtEnvOption options[2] = {};
  options[0].tag = kLiteRtEnvOptionTagMinLoggerSeverity;
  options[0].value.type = kLiteRtAnyTypeInt;
  options[0].value.int_value = kLiteRtLogSeverityError;
  options[1].tag = kLiteRtEnvOptionTagAutoRegisterAccelerators;  // CPU only: no GPU/NPU probing
  options[1].value.type = kLiteRtAnyTypeInt;
  options[1].value.int_value = kLiteRtHwAcceleratorCpu;
  LiteRtEnvironment env = nullptr;
  Check(LiteRtCreateEnvironment(2, options, &env), "CreateEnvironment");
  return env;
}

// XNNPack on `threads` threads; the runtime reads the CPU options as a TOML payload.
LiteRtOptions CpuOptions(int threads) {
  LiteRtOptions options = nullptr;
  Check(LiteRtCreateOptions(&options), "CreateOptions");
  Check(LiteRtSetOptionsHardwareAccelerators(options, kLiteRtHwAcceleratorCpu), "SetOptionsHardwareAccelerators");
  const std::string toml = "num_threads = " + std::to_string(threads) + "\n";
  LiteRtOpaqueOptions cpu = nullptr;
  Check(LiteRtCreateOpaqueOptions("xnnpack", strdup(toml.c_str()), free, &cpu), "CreateOpaqueOptions");
  Check(LiteRtAddOpaqueOptions(options, cpu), "AddOpaqueOptions");  // `options` owns `cpu` now
  return options;
}

class LiteRtInterpreter final : public Interpreter {
 public:
  LiteRtInterpreter(const std::string& tflite, int threads) {
    env_ = NewEnvironment();
    Check(LiteRtCreateModelFromBuffer(env_, tflite.data(), tflite.size(), &model_), "CreateModelFromBuffer");
    LiteRtSignature signature = nullptr;
    Check(LiteRtGetModelSignature(model_, 0, &signature), "GetModelSignature");
    LiteRtParamIndex inputs = 0, outputs = 0;
    Check(LiteRtGetNumSignatureInputs(signature, &inputs), "GetNumSignatureInputs");
    Check(LiteRtGetNumSignatureOutputs(signature, &outputs), "GetNumSignatureOutputs");
    options_ = CpuOptions(threads);
    Check(LiteRtCreateCompiledModel(env_, model_, options_, &compiled_), "CreateCompiledModel");
    Buffers(signature, inputs, outputs);
    results_.resize(outputs);
  }

  ~LiteRtInterpreter() override {
    for (auto b : in_) LiteRtDestroyTensorBuffer(b);
    for (auto b : out_) LiteRtDestroyTensorBuffer(b);
    if (compiled_) LiteRtDestroyCompiledModel(compiled_);
    if (options_) LiteRtDestroyOptions(options_);
    if (model_) LiteRtDestroyModel(model_);
    if (env_) LiteRtDestroyEnvironment(env_);
  }

  void Run(const std::vector<std::string_view>& inputs) override {
    if (inputs.size() != in_.size()) throw std::runtime_error("wrong number of inputs");
    Borrowed borrowed;
    std::vector<LiteRtTensorBuffer> bound = in_;
    for (size_t i = 0; i < in_.size(); ++i) {
      if (inputs[i].size() != in_bytes_[i]) {
        throw std::runtime_error("input " + std::to_string(i) + " has " + std::to_string(inputs[i].size()) +
                                 " bytes, the model takes " + std::to_string(in_bytes_[i]));
      }
      bound[i] = Bind(i, inputs[i], &borrowed);
    }
    Check(LiteRtRunCompiledModel(compiled_, 0, bound.size(), bound.data(), out_.size(), out_.data()),
          "RunCompiledModel");
    for (size_t i = 0; i < out_.size(); ++i) {
      void* host = nullptr;
      Check(LiteRtLockTensorBuffer(out_[i], &host, kLiteRtTensorBufferLockModeRead), "LockTensorBuffer");
      results_[i].assign(static_cast<const char*>(host), out_bytes_[i]);
      Check(LiteRtUnlockTensorBuffer(out_[i]), "UnlockTensorBuffer");
    }
  }

  std::string_view Output(size_t i) override { return results_.at(i); }

 private:
  // Buffers wrapping a request's own bytes, released after the run.
  struct Borrowed {
    std::vector<LiteRtTensorBuffer> buffers;
    ~Borrowed() {
      for (auto b : buffers) LiteRtDestroyTensorBuffer(b);
    }
  };

  // Input i's buffer for this run: the request's bytes where they lie when they are
  // aligned as the runtime requires (MessageBytes places a request's last tensor so);
  // else a copy in our own buffer.
  LiteRtTensorBuffer Bind(size_t i, std::string_view input, Borrowed* borrowed) {
    if (reinterpret_cast<uintptr_t>(input.data()) % kHostAlignment == 0) {
      LiteRtTensorBuffer wrapped = nullptr;
      // The runtime only reads an input; the const_cast is for its C signature.
      Check(LiteRtCreateTensorBufferFromHostMemory(&in_types_[i], const_cast<char*>(input.data()), input.size(),
                                                   nullptr, &wrapped),
            "CreateTensorBufferFromHostMemory");
      borrowed->buffers.push_back(wrapped);
      return wrapped;
    }
    void* host = nullptr;
    Check(LiteRtLockTensorBuffer(in_[i], &host, kLiteRtTensorBufferLockModeWrite), "LockTensorBuffer");
    std::memcpy(host, input.data(), input.size());
    Check(LiteRtUnlockTensorBuffer(in_[i]), "UnlockTensorBuffer");
    return in_[i];
  }

  // Buffers for one batch item: a -1 (batch) dimension is fixed to 1 first.
  void Buffers(LiteRtSignature signature, size_t inputs, size_t outputs) {
    bool resized = false;
    std::vector<LiteRtRankedTensorType> in_types(inputs), out_types(outputs);
    for (size_t i = 0; i < inputs; ++i) {
      LiteRtTensor tensor = nullptr;
      Check(LiteRtGetSignatureInputTensorByIndex(signature, i, &tensor), "GetSignatureInputTensorByIndex");
      Check(LiteRtGetRankedTensorType(tensor, &in_types[i]), "GetRankedTensorType");
      LiteRtLayout layout;
      Check(LiteRtGetCompiledModelInputTensorLayout(compiled_, 0, i, &layout), "GetCompiledModelInputTensorLayout");
      int dims[LITERT_TENSOR_MAX_RANK];
      bool dynamic = false;
      for (unsigned r = 0; r < layout.rank; ++r) {
        dynamic |= layout.dimensions[r] < 0;
        dims[r] = layout.dimensions[r] < 0 ? 1 : layout.dimensions[r];
      }
      if (dynamic) {
        Check(LiteRtCompiledModelResizeInputTensor(compiled_, 0, i, dims, layout.rank), "ResizeInputTensor");
        Check(LiteRtGetCompiledModelInputTensorLayout(compiled_, 0, i, &layout), "GetCompiledModelInputTensorLayout");
        resized = true;
      }
      in_types[i].layout = layout;
    }
    std::vector<LiteRtLayout> layouts(outputs);
    Check(LiteRtGetCompiledModelOutputTensorLayouts(compiled_, 0, outputs, layouts.data(), resized),
          "GetCompiledModelOutputTensorLayouts");
    for (size_t i = 0; i < outputs; ++i) {
      LiteRtTensor tensor = nullptr;
      Check(LiteRtGetSignatureOutputTensorByIndex(signature, i, &tensor), "GetSignatureOutputTensorByIndex");
      Check(LiteRtGetRankedTensorType(tensor, &out_types[i]), "GetRankedTensorType");
      out_types[i].layout = layouts[i];
    }
    in_ = Make(in_types, true, &in_bytes_);
    in_types_ = in_types;
    out_ = Make(out_types, false, &out_bytes_);
  }

  std::vector<LiteRtTensorBuffer> Make(const std::vector<LiteRtRankedTensorType>& types, bool input,
                                       std::vector<size_t>* bytes) {
    std::vector<LiteRtTensorBuffer> buffers;
    for (size_t i = 0; i < types.size(); ++i) {
      LiteRtTensorBufferRequirements req = nullptr;
      Check(input ? LiteRtGetCompiledModelInputBufferRequirements(compiled_, 0, i, &req)
                  : LiteRtGetCompiledModelOutputBufferRequirements(compiled_, 0, i, &req),
            "GetCompiledModelBufferRequirements");
      LiteRtTensorBuffer buffer = nullptr;
      Check(LiteRtCreateManagedTensorBufferFromRequirements(env_, &types[i], req, &buffer),
            "CreateManagedTensorBufferFromRequirements");
      buffers.push_back(buffer);
      size_t size = 0;
      Check(LiteRtGetTensorBufferPackedSize(buffer, &size), "GetTensorBufferPackedSize");
      bytes->push_back(size);
    }
    return buffers;
  }

  LiteRtEnvironment env_ = nullptr;
  LiteRtModel model_ = nullptr;
  LiteRtOptions options_ = nullptr;
  LiteRtCompiledModel compiled_ = nullptr;
  std::vector<LiteRtRankedTensorType> in_types_;
  std::vector<LiteRtTensorBuffer> in_, out_;
  std::vector<size_t> in_bytes_, out_bytes_;
  std::vector<std::string> results_;
};

}  // namespace

std::unique_ptr<Interpreter> MakeInterpreter(const std::string& tflite, int threads) {
  return std::make_unique<LiteRtInterpreter>(tflite, threads);
}

}  // namespace s3ml::dataplane
