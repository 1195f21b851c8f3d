// s3ml's native data plane: serves KServe v2 over the service's attested mTLS
// identity for the models its supervisor hands over on stdin.
//
// The Python supervisor attests, unseals the models and refreshes the CRL; this
// process does only the request path, with no interpreter lock and no Python
// per call. It exits when its supervisor closes stdin, so it never outlives it.
#include <malloc.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <algorithm>
#include <chrono>
#include <fstream>
#include <condition_variable>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

#include "s3ml/model_server/v1/dataplane.pb.h"
#include "services/model_server/native/calls.h"
#include "services/model_server/native/epc.h"
#include "services/model_server/native/framing.h"
#include "services/model_server/native/peers.h"
#include "services/model_server/native/registry.h"
#include "services/model_server/native/server.h"
#include "services/model_server/native/service.h"
#include "services/model_server/native/stats.h"
#include "services/model_server/native/tls.h"

namespace s3ml::dataplane {
namespace {

namespace v1 = s3ml::model_server::v1;

constexpr auto kStatsEvery = std::chrono::seconds(1);

// Request buffers are hundreds of KB. glibc would mmap each and unmap it when
// freed, so every request would fault its pages in afresh (~150 faults for a
// 602 KB tensor; with SGX EDMM each one an enclave exit). Keep them on the heap.
void KeepBuffersOnTheHeap() {
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
}

// Counters, and the calls served since the last report (for the supervisor's spans);
// lost with the supervisor if it is gone.
void Report(const Stats& stats, CallLog* calls, FrameWriter* events) {
  v1::Event counters;
  *counters.mutable_stats() = stats.Snapshot();
  events->Write(counters);
  v1::Event served;
  *served.mutable_calls() = calls->Drain();
  if (served.calls().calls_size() > 0 || served.calls().dropped() > 0) events->Write(served);
}

// This process's resident set (Linux /proc/self/statm), as the supervisor measures its own.
uint64_t ResidentBytes() {
  std::ifstream statm("/proc/self/statm");
  uint64_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

int Serve(v1::Start start, FrameWriter* events) {
  const v1::Limits& limits = start.limits();
  uint64_t flatbuffers = 0;  // the decrypted models themselves, held for the interpreters
  for (const auto& m : start.models()) flatbuffers += m.tflite().size();
  const uint64_t before = ResidentBytes();
  Registry registry(start.mutable_models(), static_cast<int>(limits.interpreters_per_model()),
                    static_cast<int>(limits.threads_per_interpreter()));
  const uint64_t after = ResidentBytes();
  const uint64_t models_resident = flatbuffers + (after > before ? after - before : 0);
  EpcAccount epc(start.epc(), events);
  PeerPolicy peers("inference API");
  peers.Update(start.peers());
  Stats stats;
  CallLog calls;
  InferenceService service(&registry, &peers, &stats, &calls, &epc, limits.max_batch(), limits.max_queue(),
                           start.server_version());
  TlsServerContext tls(start.tls_chain_pem(), start.mutable_tls_key_pem(), start.ca_pem());
  ServerOptions options;
  options.listen = start.listen();
  options.threads = static_cast<int>(limits.workers());
  options.limits.max_message_bytes = limits.max_message_bytes();
  options.limits.max_buffered_bytes = std::max<size_t>(2 * limits.max_message_bytes(), 64u << 20);
  auto server = std::make_unique<Server>(&tls, &service, options);  // throws "cannot listen on ..."
  server->Start();
  const int port = server->port();
  v1::Event ready;
  ready.mutable_ready()->set_port(static_cast<uint32_t>(port));
  ready.mutable_ready()->set_models_resident_bytes(models_resident);
  if (!events->Write(ready)) throw std::runtime_error("the supervisor went away before the plane was ready");

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
    if (control.has_epc_paging()) epc.Answer(control.epc_paging());
  }
  epc.Stop();  // no more answers: inferences waiting for one go on
  server->Shutdown(std::chrono::seconds(2));
  server.reset();
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
  KeepBuffersOnTheHeap();
  // A client that hangs up mid-write must cost an EPIPE on its connection, not the
  // process: OpenSSL writes to sockets with write(2), which raises SIGPIPE.
  signal(SIGPIPE, SIG_IGN);
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
