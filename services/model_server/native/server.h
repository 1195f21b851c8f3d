// The data plane's gRPC server: a listening socket and a pool of threads that
// all wait on one epoll set (connections armed with EPOLLONESHOT, so one thread
// at a time works on a connection). The thread that reads a complete call runs
// it to its end, inference included, while the others keep serving: a request
// waits for no hand-off to another thread (waking an idle one costs ~0.3 ms on
// a VM). No gRPC library: OpenSSL for TLS and nghttp2 for HTTP/2, so a
// request's bytes are copied and decrypted as few times as they can be.
#pragma once

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "services/model_server/native/http2.h"
#include "services/model_server/native/rpc.h"
#include "services/model_server/native/tls.h"

namespace s3ml::dataplane {

struct ServerOptions {
  std::string listen;  // HOST:PORT, [V6]:PORT; port 0 picks one
  int threads = 8;     // serving connections and running calls
  ConnectionLimits limits;
  size_t max_connections = 4096;  // beyond it new connections are closed at once
  std::chrono::seconds handshake_timeout{10};
};

class Server {
 public:
  // Binds and listens; throws std::runtime_error saying why it cannot.
  Server(const TlsServerContext* tls, Handler* handler, ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  int port() const { return port_; }
  void Start();
  // GOAWAY to every client, up to `grace` for the calls in flight to reply, then stop.
  void Shutdown(std::chrono::milliseconds grace);

 private:
  void Run();  // one thread's loop
  void Accept();
  void Serve(uint64_t tag, std::vector<uint8_t>* scratch);
  void Post(std::function<void()> task);  // for the next thread that is free
  void Drop(uint64_t tag);
  void Sweep();
  std::shared_ptr<Connection> Find(uint64_t tag);
  std::vector<std::shared_ptr<Connection>> All();

  const TlsServerContext* const tls_;
  Handler* const handler_;
  const ServerOptions options_;
  std::atomic<int> listen_fd_{-1};  // closed (-1) as soon as shutdown begins
  int port_ = 0;
  int epoll_fd_ = -1;
  // A pipe, one byte per posted task: a wake-up hint only (every fd is the host's),
  // the tasks themselves stay in enclave memory. A pipe, not an eventfd, which
  // Gramine offers only as an insecure__ host passthrough.
  int wake_[2] = {-1, -1};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> draining_{false};
  std::shared_ptr<std::atomic<int64_t>> outstanding_ = std::make_shared<std::atomic<int64_t>>(0);  // calls not replied

  std::mutex mu_;  // guards conns_, next_tag_, tasks_, next_sweep_
  std::unordered_map<uint64_t, std::shared_ptr<Connection>> conns_;
  uint64_t next_tag_;
  std::deque<std::function<void()>> tasks_;  // calls beyond a thread's first; connections with more to read
  std::chrono::steady_clock::time_point next_sweep_;
  std::vector<std::thread> threads_;
};

}  // namespace s3ml::dataplane
