// The floor under any TLS server's sequential latency on this machine: one loopback
// connection, the data plane's TLS settings (TLS 1.3, server cipher preference, so
// AES-256-GCM; read-ahead with 64 KiB reads), and calls that carry REQUEST bytes up and
// REPLY bytes down with nothing else: no HTTP/2, no gRPC, no parsing, no copies. The
// serving bench measures it in every round, so a model's overhead can be split into
// what the machine charges for moving its bytes through TLS and what the server adds.
// With BUSY_US, the floor's server keeps its core busy that long before it answers, as an
// invoke does: the client's core idles meanwhile, and waking it costs what it costs a real
// server's client (on this VM, tenths of a millisecond after an EfficientNet-long wait).
//
//   tlsfloor REQUEST_BYTES REPLY_BYTES COUNT WARMUP [BUSY_US]
//     prints one latency (ms) per line, BUSY_US included
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

[[noreturn]] void Fail(const std::string& what) {
  char detail[256] = "";
  ERR_error_string_n(ERR_get_error(), detail, sizeof(detail));
  throw std::runtime_error(what + (detail[0] ? std::string(" (") + detail + ")" : ""));
}

// An ephemeral P-256 identity: the floor needs a handshake, not an authenticated peer.
SSL_CTX* ServerContext() {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* cert = X509_new();
  if (key == nullptr || cert == nullptr) Fail("cannot make a key");
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), 0);
  X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("tlsfloor"), -1, -1, 0);
  X509_set_issuer_name(cert, name);
  X509_set_pubkey(cert, key);
  if (X509_sign(cert, key, EVP_sha256()) == 0) Fail("cannot sign the certificate");
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr || SSL_CTX_use_certificate(ctx, cert) != 1 || SSL_CTX_use_PrivateKey(ctx, key) != 1) {
    Fail("cannot set up the server context");
  }
  SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_read_ahead(ctx, 1);
  SSL_CTX_set_default_read_buffer_len(ctx, 64 * 1024);
  X509_free(cert);
  EVP_PKEY_free(key);
  return ctx;
}

bool ReadExactly(SSL* ssl, size_t n, std::vector<char>* buf) {
  for (size_t got = 0; got < n;) {
    const int k = SSL_read(ssl, buf->data(), static_cast<int>(std::min(buf->size(), n - got)));
    if (k <= 0) return false;
    got += static_cast<size_t>(k);
  }
  return true;
}

void NoDelay(int fd) {
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

// Keeps this core busy for `us` microseconds.
void Busy(int64_t us) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(us);
  while (std::chrono::steady_clock::now() < until) {
  }
}

// Answers each REQUEST bytes with REPLY bytes, `busy_us` later, until the client hangs up.
void Serve(SSL_CTX* ctx, int listener, size_t request, size_t reply, int64_t busy_us) {
  const int fd = accept(listener, nullptr, nullptr);
  if (fd < 0) return;
  NoDelay(fd);
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  std::vector<char> buf(256 * 1024);
  const std::string answer(reply, 'r');
  if (SSL_accept(ssl) == 1) {
    while (ReadExactly(ssl, request, &buf)) {
      Busy(busy_us);
      if (SSL_write(ssl, answer.data(), static_cast<int>(reply)) <= 0) break;
    }
  }
  SSL_free(ssl);
  close(fd);
}

sockaddr_in Loopback(int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  return addr;
}

int Listener(int* port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr = Loopback(0);
  socklen_t len = sizeof(addr);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0 || listen(fd, 1) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    throw std::runtime_error("cannot listen on loopback");
  }
  *port = ntohs(addr.sin_port);
  return fd;
}

// The floor's server thread, stopped and joined on every way out of Measure (a failed
// connect or handshake included: a joinable thread's destructor would abort).
class FloorServer {
 public:
  FloorServer(size_t request, size_t reply, int64_t busy_us)
      : ctx_(ServerContext(), SSL_CTX_free), listener_(Listener(&port_)) {  // ctx_ freed if Listener throws
    thread_ = std::thread(Serve, ctx_.get(), listener_, request, reply, busy_us);
  }
  ~FloorServer() {
    shutdown(listener_, SHUT_RDWR);  // wakes an accept still waiting for the client
    thread_.join();
    close(listener_);
  }
  int port() const { return port_; }

 private:
  const std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx_;
  int port_ = 0;
  int listener_;
  std::thread thread_;
};

// A client socket, closed on every way out (so the floor's server sees the end and stops).
struct Socket {
  Socket() : fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {}
  ~Socket() {
    if (fd >= 0) close(fd);
  }
  const int fd;
};

std::vector<double> Measure(size_t request, size_t reply, int count, int warmup, int64_t busy_us) {
  const FloorServer server(request, reply, busy_us);
  const Socket client;
  const sockaddr_in addr = Loopback(server.port());
  if (client.fd < 0 || connect(client.fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    throw std::runtime_error("cannot connect to the floor server");
  }
  NoDelay(client.fd);
  const std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_client_method()), SSL_CTX_free);
  const std::unique_ptr<SSL, decltype(&SSL_free)> ssl(SSL_new(ctx.get()), SSL_free);
  SSL_set_fd(ssl.get(), client.fd);
  if (SSL_connect(ssl.get()) != 1) Fail("TLS handshake with the floor server failed");
  const std::string body(request, 'q');
  std::vector<char> buf(64 * 1024);
  std::vector<double> ms;
  for (int i = 0; i < warmup + count; ++i) {
    const auto start = std::chrono::steady_clock::now();
    if (SSL_write(ssl.get(), body.data(), static_cast<int>(request)) <= 0 || !ReadExactly(ssl.get(), reply, &buf)) {
      Fail("the floor connection broke");
    }
    const double took = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    if (i >= warmup) ms.push_back(took);
  }
  SSL_shutdown(ssl.get());
  return ms;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5 && argc != 6) {
    std::cerr << "usage: tlsfloor REQUEST_BYTES REPLY_BYTES COUNT WARMUP [BUSY_US]\n";
    return 2;
  }
  try {
    const size_t request = std::stoul(argv[1]), reply = std::stoul(argv[2]);
    if (request == 0 || reply == 0 || request > (1u << 30) || reply > (1u << 30)) {
      throw std::invalid_argument("REQUEST_BYTES and REPLY_BYTES must be between 1 and 1 GiB");
    }
    const int64_t busy_us = argc == 6 ? std::stoll(argv[5]) : 0;
    if (busy_us < 0 || busy_us > 10'000'000) throw std::invalid_argument("BUSY_US must be between 0 and 10 s");
    for (double v : Measure(request, reply, std::stoi(argv[3]), std::stoi(argv[4]), busy_us)) std::cout << v << "\n";
  } catch (const std::exception& e) {
    std::cerr << "tlsfloor: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
