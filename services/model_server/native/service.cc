#include "services/model_server/native/service.h"

#include <iostream>
#include <optional>
#include <utility>

#include "inference/grpc_predict_v2.pb.h"
#include "services/model_server/native/errors.h"
#include "services/model_server/native/tensors.h"

namespace s3ml::dataplane {
namespace {

using s3ml::model_server::v1::CallRecord;

constexpr size_t kMaxMessage = 400;  // status messages are truncated, as in the Python plane
constexpr char kService[] = "/inference.GRPCInferenceService/";
const std::string kModelInfer = std::string(kService) + "ModelInfer";

// The reply `fn` makes, or the status its error maps to: the one place errors become codes.
template <typename Fn>
Reply Guarded(const std::string& method, Fn fn) {
  try {
    return fn();
  } catch (const CallError& err) {
    return Reply{err.code(), std::string(err.what()).substr(0, kMaxMessage), {}};
  } catch (const std::exception& err) {
    std::cerr << "data plane: " << method << " failed unexpectedly: " << typeid(err).name() << std::endl;
    return Reply{Code::kInternal, "internal error; see the server log", {}};
  }
}

template <typename Message>
Message Parse(const Call& call, const char* type) {
  Message message;
  if (!message.ParseFromArray(call.message.data(), static_cast<int>(call.message.size()))) {
    throw InvalidInput(std::string("the request is not a valid inference.") + type + " message");
  }
  return message;
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

}  // namespace

struct InferenceService::Infer {
  Call call;
  Responder respond;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  CallRecord record;
  std::string label = "unknown";  // the model, once known: the metrics' label
  std::optional<Admission::Ticket> ticket;
  InferRequest request;
  const LoadedModel* model = nullptr;
  Inputs inputs;  // views into call.message
  std::vector<size_t> wanted;
};

InferenceService::InferenceService(const Registry* registry, PeerPolicy* peers, Stats* stats, CallLog* calls,
                                   EpcAccount* epc, int64_t max_batch, int64_t max_queue, std::string version)
    : registry_(registry),
      peers_(peers),
      stats_(stats),
      calls_(calls),
      epc_(epc),
      admission_(stats, registry->Interpreters(), max_queue),
      max_batch_(max_batch),
      version_(std::move(version)) {}

void InferenceService::Serve(Call call, Responder respond) {
  if (call.method == kModelInfer) {
    auto infer = std::make_shared<Infer>();
    infer->call = std::move(call);
    infer->respond = std::move(respond);
    return StartInfer(std::move(infer));
  }
  if (call.method.rfind(kService, 0) != 0) {
    return respond(Reply{Code::kUnimplemented,
                         "unknown method '" + call.method.substr(0, 120) +
                             "'; this server serves inference.GRPCInferenceService (KServe v2)",
                         {}});
  }
  CallRecord record;
  record.set_start_unix_nano(UnixNanos());
  Reply reply = Guarded(call.method, [&] {
    peers_->Check(*call.peer);
    return Metadata(call);
  });
  Finish(call, &record, respond, std::move(reply));
}

Reply InferenceService::Metadata(const Call& call) {
  const std::string_view name = std::string_view(call.method).substr(sizeof(kService) - 1);
  if (name == "ServerLive") {
    Parse<inference::ServerLiveRequest>(call, "ServerLiveRequest");
    inference::ServerLiveResponse r;
    r.set_live(true);
    return Reply{Code::kOk, {}, r.SerializeAsString()};
  }
  if (name == "ServerReady") {
    Parse<inference::ServerReadyRequest>(call, "ServerReadyRequest");
    inference::ServerReadyResponse r;
    r.set_ready(!registry_->Empty());
    return Reply{Code::kOk, {}, r.SerializeAsString()};
  }
  if (name == "ModelReady") {
    const auto q = Parse<inference::ModelReadyRequest>(call, "ModelReadyRequest");
    registry_->Get(q.name(), q.version());
    inference::ModelReadyResponse r;
    r.set_ready(true);
    return Reply{Code::kOk, {}, r.SerializeAsString()};
  }
  if (name == "ServerMetadata") {
    Parse<inference::ServerMetadataRequest>(call, "ServerMetadataRequest");
    inference::ServerMetadataResponse r;
    r.set_name("s3ml-model-server");
    r.set_version(version_);
    return Reply{Code::kOk, {}, r.SerializeAsString()};
  }
  if (name == "ModelMetadata") {
    const auto q = Parse<inference::ModelMetadataRequest>(call, "ModelMetadataRequest");
    const LoadedModel& model = registry_->Get(q.name(), q.version());
    inference::ModelMetadataResponse r;
    r.set_name(model.name);
    for (const auto& v : registry_->Versions(model.name)) r.add_versions(v);
    r.set_platform(model.platform);
    auto meta = [](const Spec& spec, inference::ModelMetadataResponse::TensorMetadata* t) {
      t->set_name(spec.name);
      t->set_datatype(spec.datatype);
      for (int64_t d : spec.shape) t->add_shape(d);
    };
    for (const auto& s : model.inputs) meta(s, r.add_inputs());
    for (const auto& s : model.outputs) meta(s, r.add_outputs());
    return Reply{Code::kOk, {}, r.SerializeAsString()};
  }
  throw CallError(Code::kUnimplemented, "method '" + std::string(name.substr(0, 60)) + "' is not implemented");
}

// Checks, parses and validates on this thread, then runs or queues for an interpreter.
void InferenceService::StartInfer(std::shared_ptr<Infer> infer) {
  infer->record.set_start_unix_nano(UnixNanos());
  auto done = [this](Infer* in, Reply reply) {
    stats_->Record(in->label, CodeName(reply.code),
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - in->started).count());
    in->ticket.reset();
    Finish(in->call, &in->record, in->respond, std::move(reply));
  };
  Reply refused = Guarded(infer->call.method, [&] {
    Infer& in = *infer;
    peers_->Check(*in.call.peer);
    if (!ParseInferRequest(in.call.message.view(), &in.request)) {
      throw InvalidInput("the request is not a valid inference.ModelInferRequest message");
    }
    in.model = &registry_->Get(in.request.fields.model_name(), in.request.fields.model_version());
    in.label = in.model->name;
    in.record.set_model(in.model->name);
    in.record.set_version(in.model->version);
    in.inputs = DecodeInputs(in.request.fields, in.request.raw, in.model->inputs, max_batch_);
    in.wanted = RequestedOutputs(in.request.fields, in.model->outputs);
    if (in.call.deadline <= Clock::now()) throw Deadline("deadline passed before inference started");
    in.ticket.emplace(admission_.Enter());
    return Reply{};
  });
  if (refused.code != Code::kOk) return done(infer.get(), std::move(refused));
  const Clock::time_point deadline = infer->call.deadline;
  infer->model->pool->Submit(
      [this, infer, done](Interpreter* interpreter) {
        done(infer.get(), Guarded(infer->call.method, [&] { return Run(infer.get(), interpreter); }));
      },
      deadline,
      [infer, done] { done(infer.get(), Reply{Code::kDeadlineExceeded, "deadline passed while waiting for an interpreter", {}}); });
}

Reply InferenceService::Run(Infer* in, Interpreter* interpreter) {
  const LoadedModel& model = *in->model;
  in->record.set_infer_start_unix_nano(UnixNanos());
  epc_->Touch();  // sim EPC: this inference reads every weight, so its paging is paid here
  std::vector<std::string> outputs(model.outputs.size());
  // The zoo's models take one item per invoke; a batch runs item by item on one interpreter.
  std::vector<std::string_view> item(in->inputs.tensors.size());
  for (int64_t b = 0; b < in->inputs.batch; ++b) {
    for (size_t i = 0; i < item.size(); ++i) {
      const size_t n = model.inputs[i].ItemBytes();
      item[i] = in->inputs.tensors[i].substr(static_cast<size_t>(b) * n, n);
    }
    interpreter->Run(item);
    for (size_t o : in->wanted) {
      const auto bytes = interpreter->Output(o);
      outputs[o].append(bytes.data(), bytes.size());
    }
  }
  inference::ModelInferResponse response;
  response.set_model_name(model.name);
  response.set_model_version(model.version);
  response.set_id(in->request.fields.id());
  Encode(model, in->wanted, in->inputs.batch, outputs, &response);
  return Reply{Code::kOk, {}, response.SerializeAsString()};
}

void InferenceService::Finish(const Call& call, CallRecord* record, const Responder& respond, Reply reply) {
  record->set_end_unix_nano(UnixNanos());
  record->set_method(call.method);
  record->set_traceparent(call.traceparent);
  record->set_code(CodeName(reply.code));
  calls_->Add(std::move(*record));
  respond(std::move(reply));
}

}  // namespace s3ml::dataplane
