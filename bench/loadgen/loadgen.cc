// A KServe v2 load generator in C++, so the clients take less of the two cores
// the servers share with them (a Python gRPC client spends 0.4-1.4 ms of CPU per
// call here). Every server in a bench run is driven by the same client.
// --transport h2 (the default) calls through h2call.h, a bare HTTP/2 client on nghttp2 and
// OpenSSL; --transport grpc through Debian's gRPC C++ library. Both put the same bytes on
// the wire; measured side by side here, h2 answers a sequential call 0.1-0.4 ms sooner.
//
//   loadgen --target H:P [--ca F --cert F --key F --server-name N] [--transport h2|grpc]
//           --request F latency N WARMUP
//     prints one latency (ms) per line
//   loadgen ... session WARMUP
//     one connection kept open: prints "ready" after WARMUP calls, then for each count N
//     read from stdin makes N calls and prints their latencies (ms) on one line, until
//     stdin ends (so a caller can interleave its own measurements between blocks)
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

#include "bench/loadgen/h2call.h"
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

constexpr char kModelInfer[] = "/inference.GRPCInferenceService/ModelInfer";

// One connection making one call at a time, through either transport.
class Caller {
 public:
  virtual ~Caller() = default;
  virtual bool Call(const inference::ModelInferRequest& req) = 0;
};

// Its own connection: a local subchannel pool keeps channels from sharing one.
class GrpcCaller : public Caller {
 public:
  explicit GrpcCaller(const Options& o) {
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
    stub_ = inference::GRPCInferenceService::NewStub(grpc::CreateCustomChannel(o.Get("target"), creds, args));
  }

  bool Call(const inference::ModelInferRequest& req) override {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    inference::ModelInferResponse response;
    const grpc::Status status = stub_->ModelInfer(&context, req, &response);
    if (!status.ok()) std::cerr << "loadgen: " << status.error_code() << " " << status.error_message() << "\n";
    return status.ok();
  }

 private:
  std::unique_ptr<inference::GRPCInferenceService::Stub> stub_;
};

// Serializes each request and parses each reply, as a gRPC stub does.
class H2Caller : public Caller {
 public:
  explicit H2Caller(const Options& o) : channel_(ChannelOptions(o)) {}

  bool Call(const inference::ModelInferRequest& req) override {
    std::string reply, error;
    inference::ModelInferResponse response;
    if (!channel_.Unary(kModelInfer, req.SerializeAsString(), &reply, &error) || !response.ParseFromString(reply)) {
      std::cerr << "loadgen: " << (error.empty() ? "the reply does not parse" : error) << "\n";
      return false;
    }
    return true;
  }

 private:
  static s3ml::loadgen::H2Options ChannelOptions(const Options& o) {
    s3ml::loadgen::H2Options h2;
    const std::string target = o.Get("target");
    const size_t colon = target.rfind(':');
    h2.host = target.substr(0, colon);
    h2.port = std::stoi(target.substr(colon + 1));
    if (!o.Get("ca").empty()) {
      h2.ca_pem = Slurp(o.Get("ca"));
      h2.cert_pem = Slurp(o.Get("cert"));
      h2.key_pem = Slurp(o.Get("key"));
      h2.server_name = o.Get("server-name");
    }
    return h2;
  }

  s3ml::loadgen::H2Channel channel_;
};

std::unique_ptr<Caller> Connect(const Options& o) {
  if (o.Get("transport") == "grpc") return std::make_unique<GrpcCaller>(o);
  return std::make_unique<H2Caller>(o);
}

bool Warm(Caller* caller, const inference::ModelInferRequest& req, int warmup) {
  for (int i = 0; i < warmup; ++i) {
    if (!caller->Call(req)) return false;
  }
  return true;
}

// Latencies (ms) of `count` back-to-back calls; empty if one failed.
std::vector<double> Calls(Caller* caller, const inference::ModelInferRequest& req, int count) {
  std::vector<double> ms;
  for (int i = 0; i < count; ++i) {
    const auto start = std::chrono::steady_clock::now();
    if (!caller->Call(req)) return {};
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  return ms;
}

int Latency(const Options& o, const inference::ModelInferRequest& req, int count, int warmup) {
  auto caller = Connect(o);
  if (!Warm(caller.get(), req, warmup)) return 1;
  const std::vector<double> ms = Calls(caller.get(), req, count);
  if (ms.size() != static_cast<size_t>(count)) return 1;
  for (double v : ms) std::cout << v << "\n";
  return 0;
}

int Session(const Options& o, const inference::ModelInferRequest& req, int warmup) {
  auto caller = Connect(o);
  if (!Warm(caller.get(), req, warmup)) return 1;
  std::cout << "ready" << std::endl;
  for (int count; std::cin >> count && count > 0;) {
    const std::vector<double> ms = Calls(caller.get(), req, count);
    if (ms.size() != static_cast<size_t>(count)) return 1;
    for (size_t i = 0; i < ms.size(); ++i) std::cout << (i ? " " : "") << ms[i];
    std::cout << std::endl;
  }
  return 0;
}

int Throughput(const Options& o, const inference::ModelInferRequest& req, int threads) {
  std::vector<std::unique_ptr<Caller>> callers;
  for (int i = 0; i < threads; ++i) {
    callers.push_back(Connect(o));
    if (!callers.back()->Call(req)) return 1;
  }
  std::cout << "ready" << std::endl;
  double begin = 0, until = 0;
  if (!(std::cin >> begin >> until)) return 1;
  std::atomic<long> done{0};
  std::atomic<bool> failed{false};
  std::vector<std::thread> workers;
  for (auto& caller : callers) {
    workers.emplace_back([&, c = caller.get()] {
      double now;
      while ((now = Now()) < until) {
        if (!c->Call(req)) {
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
  const std::string transport = o.Get("transport");
  if (o.Get("target").empty() || !req.ParseFromString(Slurp(o.Get("request"))) || o.rest.empty() ||
      !(transport.empty() || transport == "h2" || transport == "grpc")) {
    std::cerr << "usage: loadgen --target H:P [--ca F --cert F --key F --server-name N] [--transport h2|grpc] "
                 "--request F "
                 "(latency COUNT WARMUP | session WARMUP | throughput THREADS)\n";
    return 2;
  }
  try {
    if (o.rest[0] == "latency" && o.rest.size() == 3) {
      return Latency(o, req, std::stoi(o.rest[1]), std::stoi(o.rest[2]));
    }
    if (o.rest[0] == "session" && o.rest.size() == 2) return Session(o, req, std::stoi(o.rest[1]));
    if (o.rest[0] == "throughput" && o.rest.size() == 2) return Throughput(o, req, std::stoi(o.rest[1]));
  } catch (const std::exception& e) {  // cannot connect, handshake refused
    std::cerr << "loadgen: " << e.what() << "\n";
    return 1;
  }
  std::cerr << "loadgen: unknown mode\n";
  return 2;
}
