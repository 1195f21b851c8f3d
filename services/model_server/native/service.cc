#include "services/model_server/native/service.h"

#include <chrono>
#include <cstring>
#include <iostream>
#include <utility>

#include "services/model_server/native/errors.h"

namespace s3ml::dataplane {
namespace {

constexpr size_t kMaxMessage = 400;  // status messages are truncated, as in the Python plane

// No deadline set: gRPC reports a time far in the future; wait without bound then.
std::chrono::system_clock::time_point CallDeadline(const grpc::ServerContext& context) {
  return context.deadline();
}

void Encode(const LoadedModel& model, const std::vector<size_t>& wanted, int64_t batch,
            const std::vector<std::string>& outputs, inference::ModelInferResponse* response) {
  for (size_t index : wanted) {
    const Spec& spec = model.outputs[index];
    auto* out = response->add_outputs();
    out->set_name(spec.name);
    out->set_datatype(spec.datatype);
    out->add_shape(batch);
    for (size_t d = 1; d < spec.shape.size(); ++d) out->add_shape(spec.shape[d]);
    *response->add_raw_output_contents() = outputs[index];
  }
}

// The caller's W3C trace context, so the supervisor's spans continue its trace. The
// supervisor validates it; an oversized one (a version-00 header is 55 characters) is
// dropped here so a client cannot make the call log hold its junk.
constexpr size_t kMaxTraceParent = 128;
std::string TraceParent(const grpc::ServerContext& context) {
  const auto& metadata = context.client_metadata();
  const auto found = metadata.find("traceparent");
  if (found == metadata.end() || found->second.size() > kMaxTraceParent) return "";
  return std::string(found->second.data(), found->second.size());
}

}  // namespace

InferenceService::InferenceService(const Registry* registry, PeerPolicy* peers, Stats* stats,
                                   CallLog* calls, int64_t max_batch, int64_t max_queue, std::string version)
    : registry_(registry),
      peers_(peers),
      stats_(stats),
      calls_(calls),
      admission_(stats, registry->Interpreters(), max_queue),
      max_batch_(max_batch),
      version_(std::move(version)) {}

template <typename Body>
grpc::Status InferenceService::Guard(grpc::ServerContext* context, const char* method, Body body) {
  s3ml::model_server::v1::CallRecord record;
  record.set_start_unix_nano(UnixNanos());
  grpc::Status status = grpc::Status::OK;
  try {
    peers_->Check(*context);
    body(record);
  } catch (const CallError& err) {
    status = grpc::Status(err.code(), std::string(err.what()).substr(0, kMaxMessage));
  } catch (const std::exception& err) {
    std::cerr << "data plane: " << method << " failed unexpectedly: " << typeid(err).name() << std::endl;
    status = grpc::Status(grpc::StatusCode::INTERNAL, "internal error; see the server log");
  }
  record.set_end_unix_nano(UnixNanos());
  record.set_method(std::string("/inference.GRPCInferenceService/") + method);
  record.set_traceparent(TraceParent(*context));
  record.set_code(CodeName(status.error_code()));
  calls_->Add(std::move(record));
  return status;
}

grpc::Status InferenceService::ServerLive(grpc::ServerContext* c, const inference::ServerLiveRequest*,
                                          inference::ServerLiveResponse* r) {
  return Guard(c, "ServerLive", [&](auto&) { r->set_live(true); });
}

grpc::Status InferenceService::ServerReady(grpc::ServerContext* c, const inference::ServerReadyRequest*,
                                           inference::ServerReadyResponse* r) {
  return Guard(c, "ServerReady", [&](auto&) { r->set_ready(!registry_->Empty()); });
}

grpc::Status InferenceService::ModelReady(grpc::ServerContext* c, const inference::ModelReadyRequest* q,
                                          inference::ModelReadyResponse* r) {
  return Guard(c, "ModelReady", [&](auto&) {
    registry_->Get(q->name(), q->version());
    r->set_ready(true);
  });
}

grpc::Status InferenceService::ServerMetadata(grpc::ServerContext* c,
                                              const inference::ServerMetadataRequest*,
                                              inference::ServerMetadataResponse* r) {
  return Guard(c, "ServerMetadata", [&](auto&) {
    r->set_name("s3ml-model-server");
    r->set_version(version_);
  });
}

grpc::Status InferenceService::ModelMetadata(grpc::ServerContext* c,
                                             const inference::ModelMetadataRequest* q,
                                             inference::ModelMetadataResponse* r) {
  return Guard(c, "ModelMetadata", [&](auto&) {
    const LoadedModel& model = registry_->Get(q->name(), q->version());
    r->set_name(model.name);
    for (const auto& v : registry_->Versions(model.name)) r->add_versions(v);
    r->set_platform(model.platform);
    auto meta = [](const Spec& spec, inference::ModelMetadataResponse::TensorMetadata* t) {
      t->set_name(spec.name);
      t->set_datatype(spec.datatype);
      for (int64_t d : spec.shape) t->add_shape(d);
    };
    for (const auto& s : model.inputs) meta(s, r->add_inputs());
    for (const auto& s : model.outputs) meta(s, r->add_outputs());
  });
}

grpc::Status InferenceService::ModelInfer(grpc::ServerContext* c, const inference::ModelInferRequest* q,
                                          inference::ModelInferResponse* r) {
  const auto started = std::chrono::steady_clock::now();
  std::string label = "unknown";
  grpc::Status status = Guard(c, "ModelInfer", [&](auto& record) {
    const LoadedModel& model = registry_->Get(q->model_name(), q->model_version());
    label = model.name;
    record.set_model(model.name);
    record.set_version(model.version);
    record.set_infer_start_unix_nano(UnixNanos());
    Infer(c, *q, model, r);
  });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  stats_->Record(label, CodeName(status.error_code()), seconds);
  return status;
}

void InferenceService::Infer(grpc::ServerContext* context, const inference::ModelInferRequest& request,
                             const LoadedModel& model, inference::ModelInferResponse* response) {
  const Inputs inputs = DecodeInputs(request, model.inputs, max_batch_);
  const auto wanted = RequestedOutputs(request, model.outputs);
  const auto deadline = CallDeadline(*context);
  if (deadline <= std::chrono::system_clock::now()) {
    throw CallError(grpc::StatusCode::DEADLINE_EXCEEDED, "deadline passed before inference started");
  }
  const auto ticket = admission_.Enter();
  std::vector<std::string> outputs(model.outputs.size());
  {
    auto interpreter = model.pool->Acquire(deadline);
    // The zoo's models take one item per invoke; a batch runs item by item on one interpreter.
    std::vector<std::string_view> item(inputs.tensors.size());
    for (int64_t b = 0; b < inputs.batch; ++b) {
      for (size_t i = 0; i < item.size(); ++i) {
        const size_t n = model.inputs[i].ItemBytes();
        item[i] = inputs.tensors[i].substr(static_cast<size_t>(b) * n, n);
      }
      interpreter->Run(item);
      for (size_t o : wanted) {
        const auto bytes = interpreter->Output(o);
        outputs[o].append(bytes.data(), bytes.size());
      }
    }
  }
  response->set_model_name(model.name);
  response->set_model_version(model.version);
  response->set_id(request.id());
  Encode(model, wanted, inputs.batch, outputs, response);
}

}  // namespace s3ml::dataplane
