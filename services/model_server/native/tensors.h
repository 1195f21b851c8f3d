// KServe v2 tensors <-> interpreter bytes, with the validation a model's inputs need.
//
// The same checks, in the same order and with the same messages, as the Python
// plane's tensors.py: every error names the tensor and what was expected, before
// any inference runs. Raw inputs are used in place (views into the request).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "inference/grpc_predict_v2.pb.h"
#include "s3ml/model_server/v1/dataplane.pb.h"

namespace s3ml::dataplane {

struct Spec {
  std::string name;
  std::string datatype;
  std::vector<int64_t> shape;  // -1: the batch dimension
  size_t itemsize = 0;

  static Spec From(const s3ml::model_server::v1::TensorSpec& proto);  // throws std::invalid_argument
  size_t ItemBytes() const;  // bytes of one batch item
};

struct Inputs {
  int64_t batch = 0;
  std::vector<std::string_view> tensors;  // one per model input, in model order
  std::vector<std::string> converted;     // storage for inputs given as typed contents
};

// A ModelInferRequest whose raw_input_contents stay where they arrived: `raw`
// views them inside the message, `fields` holds every other field, parsed.
struct InferRequest {
  inference::ModelInferRequest fields;
  std::vector<std::string_view> raw;
};

// False when `message` is not a valid ModelInferRequest. `out->raw` points into `message`.
bool ParseInferRequest(std::string_view message, InferRequest* out);

// The request's inputs in the model's input order, validated (throws CallError);
// `raw` is the request's raw_input_contents.
Inputs DecodeInputs(const inference::ModelInferRequest& request, const std::vector<std::string_view>& raw,
                    const std::vector<Spec>& specs, int64_t max_batch);

// Indices of the outputs to return (all when none are named).
std::vector<size_t> RequestedOutputs(const inference::ModelInferRequest& request,
                                     const std::vector<Spec>& specs);

}  // namespace s3ml::dataplane
