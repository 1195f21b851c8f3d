// A KServe v2 load generator in C++, so the clients take less of the two cores
// the servers share with them (a Python gRPC client spends 0.4-1.4 ms of CPU per
// call here). Every server in a bench run is driven by the same client.
//
//   loadgen --target H:P [--ca F --cert F --key F --server-name N] --request F latency N WARMUP
//     prints one latency (ms) per line
//   loadgen ... throughput THREADS
//     THREADS connections, each calling back to back; prints "ready" once all have
//     answered a first call, then reads "BEGIN UNTIL" (epoch seconds) from stdin and
//     prints "done=N cpu_s=X": calls completed and process CPU inside the window.
#include <absl/synchronization/mutex.h>
#include <grpcpp/grpcpp.h>
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "inference/grpc_predict_v2.grpc.pb.h"

namespace {

std::string Slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

double CpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_utime.tv_usec * 1e-6 + u.ru_stime.tv_sec + u.ru_stime.tv_usec * 1e-6;
}

double Now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

struct Options {
  std::map<std::string, std::string> flags;
  std::vector<std::string> rest;
  std::string Get(const std::string& k) const {
    auto it = flags.find(k);
    return it == flags.end() ? "" : it->second;
  }
};

Options Parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) == 0 && i + 1 < argc) {
      o.flags[a.substr(2)] = argv[++i];
    } else {
      o.rest.push_back(a);
    }
  }
  return o;
}

// Its own connection: a local subchannel pool keeps channels from sharing one.
std::unique_ptr<inference::GRPCInferenceService::Stub> Connect(const Options& o) {
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(64 << 20);
  args.SetMaxReceiveMessageSize(64 << 20);
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (!o.Get("ca").empty()) {
    grpc::SslCredentialsOptions tls;
    tls.pem_root_certs = Slurp(o.Get("ca"));
    tls.pem_cert_chain = Slurp(o.Get("cert"));
    tls.pem_private_key = Slurp(o.Get("key"));
    creds = grpc::SslCredentials(tls);
    args.SetSslTargetNameOverride(o.Get("server-name"));
  }
  return inference::GRPCInferenceService::NewStub(grpc::CreateCustomChannel(o.Get("target"), creds, args));
}

bool Call(inference::GRPCInferenceService::Stub* stub, const inference::ModelInferRequest& req) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  inference::ModelInferResponse response;
  const grpc::Status status = stub->ModelInfer(&context, req, &response);
  if (!status.ok()) std::cerr << "loadgen: " << status.error_code() << " " << status.error_message() << "\n";
  return status.ok();
}

int Latency(const Options& o, const inference::ModelInferRequest& req, int count, int warmup) {
  auto stub = Connect(o);
  for (int i = 0; i < warmup; ++i) {
    if (!Call(stub.get(), req)) return 1;
  }
  std::vector<double> ms;
  for (int i = 0; i < count; ++i) {
    const auto start = std::chrono::steady_clock::now();
    if (!Call(stub.get(), req)) return 1;
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  for (double v : ms) std::cout << v << "\n";
  return 0;
}

int Throughput(const Options& o, const inference::ModelInferRequest& req, int threads) {
  std::vector<std::unique_ptr<inference::GRPCInferenceService::Stub>> stubs;
  for (int i = 0; i < threads; ++i) {
    stubs.push_back(Connect(o));
    if (!Call(stubs.back().get(), req)) return 1;
  }
  std::cout << "ready" << std::endl;
  double begin = 0, until = 0;
  if (!(std::cin >> begin >> until)) return 1;
  std::atomic<long> done{0};
  std::atomic<bool> failed{false};
  std::vector<std::thread> workers;
  for (auto& stub : stubs) {
    workers.emplace_back([&, s = stub.get()] {
      double now;
      while ((now = Now()) < until) {
        if (!Call(s, req)) {
          failed = true;
          return;
        }
        if (now >= begin) ++done;
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(std::max(0.0, begin - Now())));
  const double cpu0 = CpuSeconds();
  std::this_thread::sleep_for(std::chrono::duration<double>(std::max(0.0, until - Now())));
  const double cpu1 = CpuSeconds();
  for (auto& w : workers) w.join();
  std::cout << "done=" << done.load() << " cpu_s=" << (cpu1 - cpu0) << std::endl;
  return failed ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  // As in the data plane (native/main.cc): Debian's abseil would track lock order on every
  // gRPC mutex acquisition to detect deadlocks, costing the client CPU on every call.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  const Options o = Parse(argc, argv);
  inference::ModelInferRequest req;
  if (o.Get("target").empty() || !req.ParseFromString(Slurp(o.Get("request"))) || o.rest.empty()) {
    std::cerr << "usage: loadgen --target H:P [--ca F --cert F --key F --server-name N] --request F "
                 "(latency COUNT WARMUP | throughput THREADS)\n";
    return 2;
  }
  if (o.rest[0] == "latency" && o.rest.size() == 3) {
    return Latency(o, req, std::stoi(o.rest[1]), std::stoi(o.rest[2]));
  }
  if (o.rest[0] == "throughput" && o.rest.size() == 2) return Throughput(o, req, std::stoi(o.rest[1]));
  std::cerr << "loadgen: unknown mode\n";
  return 2;
}
