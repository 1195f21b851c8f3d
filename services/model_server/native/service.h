// The KServe v2 GRPCInferenceService over the registry: thin, every call checked
// against the peer policy, every error mapped to a status in one place (Guard).
#pragma once

#include <string>

#include "inference/grpc_predict_v2.grpc.pb.h"
#include "services/model_server/native/calls.h"
#include "services/model_server/native/peers.h"
#include "services/model_server/native/registry.h"
#include "services/model_server/native/stats.h"

namespace s3ml::dataplane {

class InferenceService final : public inference::GRPCInferenceService::Service {
 public:
  InferenceService(const Registry* registry, PeerPolicy* peers, Stats* stats, CallLog* calls,
                   int64_t max_batch, int64_t max_queue, std::string version);

  grpc::Status ServerLive(grpc::ServerContext*, const inference::ServerLiveRequest*,
                          inference::ServerLiveResponse*) override;
  grpc::Status ServerReady(grpc::ServerContext*, const inference::ServerReadyRequest*,
                           inference::ServerReadyResponse*) override;
  grpc::Status ModelReady(grpc::ServerContext*, const inference::ModelReadyRequest*,
                          inference::ModelReadyResponse*) override;
  grpc::Status ServerMetadata(grpc::ServerContext*, const inference::ServerMetadataRequest*,
                              inference::ServerMetadataResponse*) override;
  grpc::Status ModelMetadata(grpc::ServerContext*, const inference::ModelMetadataRequest*,
                             inference::ModelMetadataResponse*) override;
  grpc::Status ModelInfer(grpc::ServerContext*, const inference::ModelInferRequest*,
                          inference::ModelInferResponse*) override;

 private:
  // Runs `body(record)` for one call: checks the peer, maps errors to a status,
  // and logs the call (the body may name the model it served).
  template <typename Body>
  grpc::Status Guard(grpc::ServerContext* context, const char* method, Body body);
  void Infer(grpc::ServerContext* context, const inference::ModelInferRequest& request,
             const LoadedModel& model, inference::ModelInferResponse* response);

  const Registry* registry_;
  PeerPolicy* peers_;
  Stats* stats_;
  CallLog* calls_;
  Admission admission_;
  const int64_t max_batch_;
  const std::string version_;
};

}  // namespace s3ml::dataplane
