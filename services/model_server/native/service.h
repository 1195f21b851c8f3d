// The KServe v2 GRPCInferenceService over the registry: thin, every call checked
// against the peer policy, every error mapped to a status in one place (Finish).
// A call runs on the server thread that read it; a ModelInfer that finds every
// interpreter busy waits in its model's queue (runtime.h), not on a thread.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "services/model_server/native/calls.h"
#include "services/model_server/native/epc.h"
#include "services/model_server/native/peers.h"
#include "services/model_server/native/registry.h"
#include "services/model_server/native/rpc.h"
#include "services/model_server/native/stats.h"

namespace s3ml::dataplane {

class InferenceService final : public Handler {
 public:
  InferenceService(const Registry* registry, PeerPolicy* peers, Stats* stats, CallLog* calls, EpcAccount* epc,
                   int64_t max_batch, int64_t max_queue, std::string version);

  void Serve(Call call, Responder respond) override;

 private:
  struct Infer;  // one ModelInfer between admission and its reply

  Reply Metadata(const Call& call);  // the five cheap RPCs
  void StartInfer(std::shared_ptr<Infer> infer);
  Reply Run(Infer* infer, Interpreter* interpreter);
  // Every call ends here: logged for spans, counted, answered.
  void Finish(const Call& call, s3ml::model_server::v1::CallRecord* record, const Responder& respond, Reply reply);

  const Registry* registry_;
  PeerPolicy* peers_;
  Stats* stats_;
  CallLog* calls_;
  EpcAccount* epc_;
  Admission admission_;
  const int64_t max_batch_;
  const std::string version_;
};

}  // namespace s3ml::dataplane
