#include "services/model_server/native/server.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace s3ml::dataplane {
namespace {

constexpr int kMaxEvents = 64;
constexpr int kAcceptsPerWake = 64;
constexpr size_t kScratch = 256u << 10;  // one TLS read's plaintext

std::pair<std::string, std::string> SplitHostPort(const std::string& listen) {
  if (!listen.empty() && listen[0] == '[') {
    const size_t close = listen.find(']');
    if (close != std::string::npos && close + 1 < listen.size() && listen[close + 1] == ':') {
      return {listen.substr(1, close - 1), listen.substr(close + 2)};
    }
  } else if (const size_t colon = listen.rfind(':'); colon != std::string::npos) {
    return {listen.substr(0, colon), listen.substr(colon + 1)};
  }
  throw std::runtime_error("cannot listen on '" + listen + "': expected HOST:PORT");
}

int Listen(const std::string& listen) {
  const auto [host, port] = SplitHostPort(listen);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (const int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    throw std::runtime_error("cannot listen on " + listen + ": " + gai_strerror(rc));
  }
  std::string why = "no address";
  int fd = -1;
  for (addrinfo* a = found; a != nullptr && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    const int on = 1, off = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    if (a->ai_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));  // v4 too
    if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || ::listen(fd, 1024) != 0) {
      why = std::strerror(errno);
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(found);
  if (fd < 0) throw std::runtime_error("cannot listen on " + listen + ": " + why);
  return fd;
}

int BoundPort(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  return ntohs(addr.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port
                                          : reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
}

}  // namespace

constexpr uint64_t kListener = 1, kWake = 2, kFirstConnection = 16;  // epoll tags

Server::Server(const TlsServerContext* tls, Handler* handler, ServerOptions options)
    : tls_(tls), handler_(handler), options_(std::move(options)), next_tag_(kFirstConnection) {
  listen_fd_ = Listen(options_.listen);
  port_ = BoundPort(listen_fd_);
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0 || pipe2(wake_, O_NONBLOCK | O_CLOEXEC) != 0) {
    const std::string why = std::strerror(errno);
    for (int fd : {listen_fd_.load(), epoll_fd_, wake_[0], wake_[1]}) {
      if (fd >= 0) close(fd);
    }
    throw std::runtime_error("cannot set up the server's epoll: " + why);
  }
  const std::pair<int, epoll_event> watches[] = {
      {listen_fd_.load(), epoll_event{EPOLLIN | EPOLLONESHOT, {.u64 = kListener}}},
      {wake_[0], epoll_event{EPOLLIN, {.u64 = kWake}}},  // level-triggered: while bytes remain
  };
  for (auto [fd, event] : watches) epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event);
}

Server::~Server() {
  Shutdown(std::chrono::milliseconds(0));
  for (int fd : {listen_fd_.load(), epoll_fd_, wake_[0], wake_[1]}) {
    if (fd >= 0) close(fd);
  }
}

void Server::Start() {
  next_sweep_ = std::chrono::steady_clock::now();
  for (int i = 0; i < std::max(1, options_.threads); ++i) threads_.emplace_back([this] { Run(); });
}

void Server::Run() {
  std::vector<uint8_t> scratch(kScratch);  // this thread's TLS plaintext
  while (!stopping_) {
    epoll_event event;
    const int n = epoll_wait(epoll_fd_, &event, 1, 1000);  // one event: the others stay for other threads
    if (stopping_) break;
    if (n == 1) {
      if (event.data.u64 == kListener) {
        Accept();
      } else if (event.data.u64 == kWake) {
        char byte;
        std::function<void()> task;
        if (read(wake_[0], &byte, 1) == 1) {
          std::lock_guard<std::mutex> lock(mu_);
          if (!tasks_.empty()) task = std::move(tasks_.front()), tasks_.pop_front();
        }
        if (task) task();
      } else if (event.data.u64 >= kFirstConnection) {
        Serve(event.data.u64, &scratch);
      }
    }
    Sweep();
  }
}

void Server::Accept() {
  const int listener = listen_fd_.load();
  if (listener < 0) return;  // shutting down
  for (int i = 0; i < kAcceptsPerWake; ++i) {
    const int fd = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      break;  // EAGAIN: none left; EMFILE: try again on the next wake
    }
    const int on = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    std::lock_guard<std::mutex> lock(mu_);
    SSL* ssl = conns_.size() < options_.max_connections ? tls_->NewSession(fd) : nullptr;
    if (ssl == nullptr) {  // over the limit
      close(fd);
      continue;
    }
    const uint64_t tag = next_tag_++;
    conns_.emplace(tag, std::make_shared<Connection>(fd, ssl, epoll_fd_, tag, options_.limits));
  }
  if (!draining_) {
    epoll_event event{EPOLLIN | EPOLLONESHOT, {.u64 = kListener}};
    epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, listener, &event);
  }
}

void Server::Serve(uint64_t tag, std::vector<uint8_t>* scratch) {
  const std::shared_ptr<Connection> conn = Find(tag);
  if (!conn) return;  // closed by another thread meanwhile
  std::vector<std::pair<int32_t, Call>> calls;
  const Connection::Next next = conn->OnReady(scratch, &calls);
  if (next == Connection::Next::kClose) return Drop(tag);  // its client is gone: nobody to answer
  // More may wait in OpenSSL's buffer, where epoll cannot see it.
  if (next == Connection::Next::kAgain) Post([this, tag] {
    std::vector<uint8_t> more(kScratch);
    Serve(tag, &more);
  });
  // The connection is re-armed: other threads serve it meanwhile. This thread runs
  // the first call itself (no hand-off) and posts the rest for threads that are free.
  for (size_t i = calls.size(); i-- > 0;) {
    // Shared: a task must be copyable (std::function), a call's bytes are not.
    auto serve = [this, conn, stream = calls[i].first, call = std::make_shared<Call>(std::move(calls[i].second))] {
      handler_->Serve(std::move(*call), [conn, stream, left = outstanding_](Reply reply) {
        conn->Respond(stream, std::move(reply));
        --*left;
      });
    };
    ++*outstanding_;
    if (i > 0) {
      Post(std::move(serve));
    } else {
      serve();
    }
  }
}

void Server::Post(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    tasks_.push_back(std::move(task));
  }
  const char byte = 1;
  (void)!write(wake_[1], &byte, 1);
}

std::shared_ptr<Connection> Server::Find(uint64_t tag) {
  std::lock_guard<std::mutex> lock(mu_);
  const auto found = conns_.find(tag);
  return found == conns_.end() ? nullptr : found->second;
}

std::vector<std::shared_ptr<Connection>> Server::All() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::shared_ptr<Connection>> all;
  for (auto& [tag, conn] : conns_) all.push_back(conn);
  return all;
}

void Server::Drop(uint64_t tag) {
  std::shared_ptr<Connection> conn;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const auto found = conns_.find(tag);
    if (found == conns_.end()) return;
    conn = std::move(found->second);
    conns_.erase(found);
  }
  conn->Close();  // a call in flight may still hold it: its reply is then dropped
}

// Once a second, by whichever thread passes by: handshakes that take too long (a
// client that connects and says nothing), and connections with nothing left to
// do after GOAWAY (their last reply came from another thread).
void Server::Sweep() {
  const auto now = std::chrono::steady_clock::now();
  std::vector<std::pair<uint64_t, std::shared_ptr<Connection>>> all;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (now < next_sweep_) return;
    next_sweep_ = now + std::chrono::seconds(1);
    for (auto& [tag, conn] : conns_) all.emplace_back(tag, conn);
  }
  for (auto& [tag, conn] : all) {
    const bool stalled = !conn->Established() && now - conn->accepted() > options_.handshake_timeout;
    if (stalled || (draining_ && conn->Finished())) Drop(tag);
  }
}

void Server::Shutdown(std::chrono::milliseconds grace) {
  if (stopping_) return;
  draining_ = true;
  const int listener = listen_fd_.exchange(-1);
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, listener, nullptr);
  close(listener);  // at once: a restarted replica can bind the port meanwhile
  for (auto& conn : All()) conn->GoAway();
  const auto until = std::chrono::steady_clock::now() + grace;
  while (*outstanding_ > 0 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  stopping_ = true;
  const std::vector<char> bytes(threads_.size(), 0);  // one per thread, in case one is read
  (void)!write(wake_[1], bytes.data(), bytes.size());   // left unread: wakes every thread
  for (auto& t : threads_) t.join();
  threads_.clear();
  for (auto& conn : All()) conn->Close();
  std::lock_guard<std::mutex> lock(mu_);
  conns_.clear();
}

}  // namespace s3ml::dataplane
