// s3ml's native data plane: serves KServe v2 over the service's attested mTLS
// identity for the models its supervisor hands over on stdin.
//
// The Python supervisor attests, unseals the models and refreshes the CRL; this
// process does only the request path, with no interpreter lock and no Python
// per call. It exits when its supervisor closes stdin, so it never outlives it.
#include <absl/synchronization/mutex.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/server_credentials.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <iostream>
#include <memory>
#include <string>
#include <thread>

#include "s3ml/model_server/v1/dataplane.pb.h"
#include "services/model_server/native/calls.h"
#include "services/model_server/native/framing.h"
#include "services/model_server/native/peers.h"
#include "services/model_server/native/registry.h"
#include "services/model_server/native/service.h"
#include "services/model_server/native/stats.h"

namespace s3ml::dataplane {
namespace {

namespace v1 = s3ml::model_server::v1;

constexpr auto kStatsEvery = std::chrono::seconds(1);

std::shared_ptr<grpc::ServerCredentials> Credentials(v1::Start* start) {
  grpc::SslServerCredentialsOptions tls(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  tls.pem_root_certs = start->ca_pem();
  tls.pem_key_cert_pairs.push_back({start->tls_key_pem(), start->tls_chain_pem()});
  auto creds = grpc::SslServerCredentials(tls);
  std::fill(start->mutable_tls_key_pem()->begin(), start->mutable_tls_key_pem()->end(), '\0');
  std::fill(tls.pem_key_cert_pairs[0].private_key.begin(), tls.pem_key_cert_pairs[0].private_key.end(), '\0');
  return creds;
}

// Counters, and the calls served since the last report (for the supervisor's spans).
void Report(const Stats& stats, CallLog* calls, FrameWriter* events) {
  v1::Event counters;
  *counters.mutable_stats() = stats.Snapshot();
  events->Write(counters);
  v1::Event served;
  *served.mutable_calls() = calls->Drain();
  if (served.calls().calls_size() > 0 || served.calls().dropped() > 0) events->Write(served);
}

int Serve(v1::Start start, FrameWriter* events) {
  const v1::Limits& limits = start.limits();
  Registry registry(start.mutable_models(), static_cast<int>(limits.interpreters_per_model()),
                    static_cast<int>(limits.threads_per_interpreter()));
  PeerPolicy peers("inference API");
  peers.Update(start.peers());
  Stats stats;
  CallLog calls;
  InferenceService service(&registry, &peers, &stats, &calls, limits.max_batch(), limits.max_queue(),
                           start.server_version());

  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(start.listen(), Credentials(&start), &port);
  builder.SetMaxReceiveMessageSize(static_cast<int>(limits.max_message_bytes()));
  builder.SetMaxSendMessageSize(static_cast<int>(limits.max_message_bytes()));
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 1);
  grpc::ResourceQuota quota("s3ml-data-plane");
  quota.SetMaxThreads(static_cast<int>(limits.workers()) + 2);  // + the completion-queue pollers
  builder.SetResourceQuota(quota);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    v1::Event fatal;
    fatal.set_fatal("cannot listen on " + start.listen());
    events->Write(fatal);
    return 1;
  }
  v1::Event ready;
  ready.mutable_ready()->set_port(static_cast<uint32_t>(port));
  events->Write(ready);

  std::atomic<bool> done{false};
  std::mutex mu;
  std::condition_variable wake;
  std::thread reporter([&] {
    std::unique_lock<std::mutex> lock(mu);
    while (!wake.wait_for(lock, kStatsEvery, [&] { return done.load(); })) Report(stats, &calls, events);
  });
  v1::Control control;
  while (ReadFrame(STDIN_FILENO, &control)) {  // until the supervisor closes stdin
    if (control.has_peers()) peers.Update(control.peers());
  }
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  done = true;
  wake.notify_all();
  reporter.join();
  Report(stats, &calls, events);  // the last calls and counters, after the server stopped
  return 0;
}

}  // namespace
}  // namespace s3ml::dataplane

int main() {
  using namespace s3ml::dataplane;
  // Debian builds abseil without NDEBUG, so every absl::Mutex inside gRPC would track
  // lock order (a graph and a stack trace per acquisition) to detect deadlocks: a
  // debugging aid that costs CPU on every call, off in release builds of abseil.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  FrameWriter events(STDOUT_FILENO);
  try {
    s3ml::model_server::v1::Control control;
    if (!ReadFrame(STDIN_FILENO, &control) || !control.has_start()) {
      throw std::runtime_error("the supervisor's first message must be Start");
    }
    return Serve(std::move(*control.mutable_start()), &events);
  } catch (const std::exception& err) {
    s3ml::model_server::v1::Event fatal;
    fatal.set_fatal(err.what());
    events.Write(fatal);
    std::cerr << "data plane: " << err.what() << std::endl;
    return 1;
  }
}
