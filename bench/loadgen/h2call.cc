#include "bench/loadgen/h2call.h"

#include "services/model_server/native/wire.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string_view>
#include <vector>

namespace s3ml::loadgen {
namespace {

constexpr int32_t kWindow = 16 << 20;  // replies never wait for WINDOW_UPDATE
constexpr size_t kWriteChunk = 64 * 1024;
constexpr size_t kMaxReply = 64 << 20;  // as the gRPC C++ transport's receive limit
constexpr unsigned char kAlpn[] = {2, 'h', '2'};

[[noreturn]] void Fail(const std::string& what) {
  char detail[256] = "";
  ERR_error_string_n(ERR_get_error(), detail, sizeof(detail));
  ERR_clear_error();
  throw std::runtime_error(what + (detail[0] ? std::string(" (") + detail + ")" : ""));
}

using Bio = std::unique_ptr<BIO, decltype(&BIO_free)>;
Bio MemBio(const std::string& pem) { return Bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free); }

int Connect(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0 || found == nullptr) {
    throw std::runtime_error("cannot resolve " + host);
  }
  const int fd = socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const bool ok = fd >= 0 && connect(fd, found->ai_addr, found->ai_addrlen) == 0;
  freeaddrinfo(found);
  if (!ok) {
    if (fd >= 0) close(fd);
    throw std::runtime_error("cannot connect to " + host + ":" + std::to_string(port));
  }
  const int one = 1;  // a request's last frame must not wait for an ACK (Nagle)
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

SSL_CTX* ClientContext(const H2Options& o) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == nullptr) Fail("TLS: no context");
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_alpn_protos(ctx, kAlpn, sizeof(kAlpn));
  Bio ca = MemBio(o.ca_pem);
  while (X509* cert = PEM_read_bio_X509(ca.get(), nullptr, nullptr, nullptr)) {
    X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), cert);
    X509_free(cert);
  }
  Bio chain = MemBio(o.cert_pem);
  X509* leaf = PEM_read_bio_X509(chain.get(), nullptr, nullptr, nullptr);
  const bool leaf_ok = leaf != nullptr && SSL_CTX_use_certificate(ctx, leaf) == 1;
  X509_free(leaf);
  while (X509* extra = PEM_read_bio_X509(chain.get(), nullptr, nullptr, nullptr)) SSL_CTX_add0_chain_cert(ctx, extra);
  Bio key_bio = MemBio(o.key_pem);
  EVP_PKEY* key = PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr);
  const bool key_ok = key != nullptr && SSL_CTX_use_PrivateKey(ctx, key) == 1;
  EVP_PKEY_free(key);
  if (!leaf_ok || !key_ok) {
    SSL_CTX_free(ctx);
    Fail("TLS: the client certificate or key does not load");
  }
  ERR_clear_error();
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  return ctx;
}

nghttp2_nv Header(const char* name, const std::string& value) {
  return {reinterpret_cast<uint8_t*>(const_cast<char*>(name)),
          reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), std::strlen(name), value.size(),
          NGHTTP2_NV_FLAG_NONE};
}

}  // namespace

// The call in flight. Its body is sent from where the caller keeps the message: nghttp2
// frames it without copying (NO_COPY), in frames as large as the server allows; SendData
// gathers a small frame's header and bytes into the channel's write buffer, and writes a
// large frame's bytes to TLS straight from the message.
struct H2Channel::Call {
  explicit Call(const std::string& m) : prefix(dataplane::Prefix(m.size())), message(m) {}
  size_t Size() const { return prefix.size() + message.size(); }
  // Moves body bytes [sent, sent + n) along: the gRPC prefix's part is appended to `out`,
  // and the message's part returned where it lies.
  std::string_view Take(size_t n, std::string* out) {
    if (sent < prefix.size()) {
      const size_t head = std::min(n, prefix.size() - sent);
      out->append(prefix, sent, head);
      sent += head, n -= head;
    }
    const std::string_view bytes(message.data() + (sent - prefix.size()), n);
    sent += n;
    return bytes;
  }

  int32_t stream = -1;
  const std::string prefix;    // gRPC's 5-byte length prefix
  const std::string& message;  // the caller's, alive for the call
  size_t framed = 0;           // body bytes nghttp2 has put in DATA frames
  size_t sent = 0;             // body bytes gathered for the socket
  dataplane::MessageReader reply{kMaxReply};
  dataplane::MessageReader::Status framing = dataplane::MessageReader::Status::kOk;
  std::string http_status, grpc_status, grpc_message;
  uint32_t reset = 0;
  bool closed = false;
};

H2Channel::Call* H2Channel::CallOf(void* self) { return static_cast<H2Channel*>(self)->call_.get(); }

int H2Channel::OnHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
                        const uint8_t* value, size_t valuelen, uint8_t, void* self) {
  Call* call = CallOf(self);
  if (call == nullptr || frame->hd.stream_id != call->stream) return 0;
  const std::string key(reinterpret_cast<const char*>(name), namelen);
  const std::string val(reinterpret_cast<const char*>(value), valuelen);
  if (key == ":status") call->http_status = val;
  if (key == "grpc-status") call->grpc_status = val;
  if (key == "grpc-message") call->grpc_message = val;
  return 0;
}

int H2Channel::OnData(nghttp2_session*, uint8_t, int32_t stream, const uint8_t* data, size_t len, void* self) {
  Call* call = CallOf(self);
  if (call != nullptr && stream == call->stream) call->framing = call->reply.Feed(data, len);
  return 0;
}

int H2Channel::OnClose(nghttp2_session*, int32_t stream, uint32_t error_code, void* self) {
  Call* call = CallOf(self);
  if (call != nullptr && stream == call->stream) {
    call->closed = true;
    call->reset = error_code;
  }
  return 0;
}

ssize_t H2Channel::ReadBody(nghttp2_session*, int32_t, uint8_t*, size_t length, uint32_t* flags,
                            nghttp2_data_source* source, void*) {
  auto* call = static_cast<Call*>(source->ptr);
  const size_t n = std::min(length, call->Size() - call->framed);
  call->framed += n;
  *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
  if (call->framed == call->Size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
  return static_cast<ssize_t>(n);
}

int H2Channel::SendData(nghttp2_session*, nghttp2_frame* frame, const uint8_t* framehd, size_t length,
                        nghttp2_data_source* source, void* self) {
  auto* channel = static_cast<H2Channel*>(self);
  if (frame->data.padlen != 0) return NGHTTP2_ERR_CALLBACK_FAILURE;  // never asked for
  channel->out_.append(reinterpret_cast<const char*>(framehd), 9);
  const std::string_view bytes = static_cast<Call*>(source->ptr)->Take(length, &channel->out_);
  if (bytes.size() < kWriteChunk) {
    channel->out_.append(bytes);
    return channel->out_.size() < kWriteChunk || channel->WriteOut() ? 0 : NGHTTP2_ERR_CALLBACK_FAILURE;
  }
  const bool sent = channel->WriteOut() && channel->Write(bytes.data(), bytes.size());
  return sent ? 0 : NGHTTP2_ERR_CALLBACK_FAILURE;
}

// DATA frames as large as the windows and the server's SETTINGS_MAX_FRAME_SIZE allow
// (nghttp2 otherwise stops at 16 KiB).
ssize_t H2Channel::FrameLength(nghttp2_session*, uint8_t, int32_t, int32_t session_window, int32_t stream_window,
                               uint32_t max_frame, void*) {
  return std::min<ssize_t>({session_window, stream_window, static_cast<ssize_t>(max_frame)});
}

H2Channel::H2Channel(const H2Options& options) : options_(options) {
  fd_ = Connect(options.host, options.port);
  if (!options.ca_pem.empty()) {
    ctx_ = ClientContext(options);
    ssl_ = SSL_new(ctx_);
    SSL_set_fd(ssl_, fd_);
    SSL_set_tlsext_host_name(ssl_, options.server_name.c_str());
    SSL_set1_host(ssl_, options.server_name.c_str());
    if (SSL_connect(ssl_) != 1) Fail("TLS: handshake with " + options.host + " failed");
    const unsigned char* proto = nullptr;
    unsigned int len = 0;
    SSL_get0_alpn_selected(ssl_, &proto, &len);
    if (len != 2 || std::memcmp(proto, "h2", 2) != 0) throw std::runtime_error("TLS: the server did not choose h2");
  }
  nghttp2_session_callbacks* callbacks = nullptr;
  nghttp2_session_callbacks_new(&callbacks);
  nghttp2_session_callbacks_set_on_header_callback(callbacks, OnHeader);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, OnData);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, OnClose);
  nghttp2_session_callbacks_set_send_data_callback(callbacks, SendData);
  nghttp2_session_callbacks_set_data_source_read_length_callback(callbacks, FrameLength);
  nghttp2_session_client_new(&session_, callbacks, this);
  nghttp2_session_callbacks_del(callbacks);
  const nghttp2_settings_entry settings[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
                                             {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<uint32_t>(kWindow)}};
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, 2);
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, kWindow);
  if (!Flush()) throw std::runtime_error("cannot send the HTTP/2 preface");
}

H2Channel::~H2Channel() {
  nghttp2_session_del(session_);
  if (ssl_ != nullptr) SSL_free(ssl_);
  if (ctx_ != nullptr) SSL_CTX_free(ctx_);
  if (fd_ >= 0) close(fd_);
}

bool H2Channel::Write(const char* data, size_t size) {
  for (size_t done = 0; done < size;) {
    const int n = ssl_ != nullptr ? SSL_write(ssl_, data + done, static_cast<int>(size - done))
                                  : static_cast<int>(send(fd_, data + done, size - done, MSG_NOSIGNAL));
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

bool H2Channel::WriteOut() {
  if (!Write(out_.data(), out_.size())) return false;
  out_.clear();
  return true;
}

bool H2Channel::Flush() {
  for (;;) {
    const uint8_t* data = nullptr;
    const ssize_t n = nghttp2_session_mem_send(session_, &data);  // DATA frames go through SendData
    if (n < 0) return false;
    if (n == 0) break;
    out_.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
    if (out_.size() >= kWriteChunk && !WriteOut()) return false;
  }
  return WriteOut();
}

bool H2Channel::Receive() {
  char buf[64 * 1024];
  const int n = ssl_ != nullptr ? SSL_read(ssl_, buf, sizeof(buf)) : static_cast<int>(recv(fd_, buf, sizeof(buf), 0));
  if (n <= 0) return false;
  return nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(buf), static_cast<size_t>(n)) == n;
}

bool H2Channel::Unary(const std::string& path, const std::string& message, std::string* reply, std::string* error) {
  call_ = std::make_unique<Call>(message);
  const std::string method = "POST", scheme = ssl_ != nullptr ? "https" : "http";
  const std::string authority = options_.server_name.empty() ? options_.host : options_.server_name;
  const std::string type = "application/grpc", te = "trailers", timeout = "60S";
  const std::vector<nghttp2_nv> headers = {Header(":method", method),     Header(":scheme", scheme),
                                           Header(":path", path),         Header(":authority", authority),
                                           Header("content-type", type),  Header("te", te),
                                           Header("grpc-timeout", timeout)};
  nghttp2_data_provider body{};
  body.source.ptr = call_.get();
  body.read_callback = ReadBody;
  call_->stream = nghttp2_submit_request(session_, nullptr, headers.data(), headers.size(), &body, nullptr);
  if (call_->stream < 0) {
    *error = "cannot submit the request";
    return false;
  }
  while (!call_->closed) {
    if (!Flush() || call_->closed) break;
    if (!Receive()) {
      *error = "the connection failed or was closed";
      return false;
    }
  }
  if (!Flush()) {  // WINDOW_UPDATEs and ACKs the reply caused
    *error = "the connection failed";
    return false;
  }
  if (call_->reset != 0) {
    *error = "stream reset with HTTP/2 error " + std::to_string(call_->reset);
    return false;
  }
  if (call_->http_status != "200" || call_->grpc_status != "0") {
    *error = "HTTP " + call_->http_status + " grpc-status " + call_->grpc_status + ": " + call_->grpc_message;
    return false;
  }
  if (call_->framing != dataplane::MessageReader::Status::kOk || !call_->reply.Complete()) {
    *error = "the reply is not one uncompressed gRPC message of at most 64 MiB";
    return false;
  }
  reply->assign(call_->reply.Take().view());
  return true;
}

}  // namespace s3ml::loadgen
