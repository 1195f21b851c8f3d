#include "services/model_server/native/http2.h"

#include <openssl/err.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "services/model_server/native/tls.h"

namespace s3ml::dataplane {
namespace {

constexpr size_t kReadPerTurn = 4u << 20;    // then let the connection's neighbours have the thread
constexpr size_t kMaxPendingOut = 4u << 20;  // encrypted-to-be bytes queued before nghttp2 must wait
constexpr size_t kMaxHeaderValue = 1024;     // longer values of the headers we keep are refused
constexpr size_t kMaxTraceParent = 128;      // a version-00 header is 55 characters
constexpr int32_t kStreamWindow = 4 << 20;   // a 602 KB tensor arrives without waiting for WINDOW_UPDATE
constexpr int32_t kConnectionWindow = 16 << 20;
// A 602 KB tensor in one DATA frame instead of 37: fewer frames to parse here and to
// build in the client, which may also send the body from where it lies (RFC 9113 6.5.2).
constexpr uint32_t kMaxFrame = 1u << 20;
constexpr uint32_t kMaxHeaderList = 16 << 10;
constexpr auto kLongestTimeout = std::chrono::hours(24 * 365);  // beyond this: no deadline

nghttp2_nv Header(const char* name, const std::string& value) {
  return {reinterpret_cast<uint8_t*>(const_cast<char*>(name)),
          reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), std::strlen(name), value.size(),
          NGHTTP2_NV_FLAG_NONE};
}

Connection* Self(void* p) { return static_cast<Connection*>(p); }

bool IsGrpc(const std::string& content_type) {
  constexpr char kGrpc[] = "application/grpc";
  constexpr size_t n = sizeof(kGrpc) - 1;
  return content_type.compare(0, n, kGrpc) == 0 &&
         (content_type.size() == n || content_type[n] == '+' || content_type[n] == ';');
}

}  // namespace

Connection::Connection(int fd, SSL* ssl, int epoll_fd, uint64_t tag, ConnectionLimits limits)
    : fd_(fd), ssl_(ssl), epoll_fd_(epoll_fd), tag_(tag), limits_(limits) {
  epoll_event event{};
  event.events = EPOLLIN | EPOLLONESHOT;
  event.data.u64 = tag_;
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd_, &event);
}

Connection::~Connection() {
  if (session_) nghttp2_session_del(session_);
  SSL_free(ssl_);
  close(fd_);
}

Connection::Next Connection::OnReady(std::vector<uint8_t>* scratch, std::vector<std::pair<int32_t, Call>>* calls) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return Next::kClose;
  if (!session_) {
    const Next next = Handshake();
    if (next == Next::kWait) Arm();
    if (next != Next::kAgain) return next;  // in progress, or failed
  }
  completed_ = calls;
  const Next read = ReadAll(scratch);
  completed_ = nullptr;
  const Next next = After(read);
  if (next != Next::kClose) Arm();
  return next;
}

Connection::Next Connection::Handshake() {
  ERR_clear_error();
  const int done = SSL_do_handshake(ssl_);
  if (done == 1) {
    if (!NegotiatedH2(ssl_)) return Next::kClose;  // not a gRPC client
    peer_ = std::make_shared<const PeerCert>(ReadPeer(SSL_get0_peer_certificate(ssl_)));
    if (!StartSession()) return Next::kClose;
    return Next::kAgain;  // the client's preface may already sit in OpenSSL's buffer
  }
  switch (SSL_get_error(ssl_, done)) {
    case SSL_ERROR_WANT_READ: return Next::kWait;
    case SSL_ERROR_WANT_WRITE: return Next::kWait;  // the ClientHello's answer waits in the socket: Arm
    default: ERR_clear_error(); return Next::kClose;  // e.g. no or untrusted client certificate
  }
}

bool Connection::StartSession() {
  if (nghttp2_session_server_new(&session_, Callbacks(), this) != 0) {
    session_ = nullptr;
    return false;
  }
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, limits_.max_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<uint32_t>(kStreamWindow)},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, kMaxHeaderList},
      {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, kMaxFrame},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, sizeof(settings) / sizeof(settings[0]));
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, kConnectionWindow);
  return true;
}

// Reads and parses what the socket has. A DATA payload is decrypted straight into its
// stream's message; other bytes go through `scratch` (and the message gets a copy).
Connection::Next Connection::ReadAll(std::vector<uint8_t>* scratch) {
  size_t total = 0;
  for (;;) {
    ERR_clear_error();
    const auto [in_place, room] = InPlace();
    uint8_t* const into = room > 0 ? in_place : scratch->data();
    const int n = SSL_read(ssl_, into, static_cast<int>(room > 0 ? room : scratch->size()));
    if (n > 0) {
      const Inbound before = inbound_;
      feeding_ = room > 0 ? before.stream : 0;
      const ssize_t parsed = nghttp2_session_mem_recv(session_, into, static_cast<size_t>(n));
      feeding_ = 0;
      parked_.clear();
      if (parsed < 0) return Next::kClose;
      // Payload bytes all, whether nghttp2 passed them on (OnData) or dropped them.
      if (room > 0 && inbound_.serial == before.serial) inbound_.left = before.left - static_cast<size_t>(n);
      total += static_cast<size_t>(n);
      if (total >= kReadPerTurn) return Next::kAgain;
      continue;
    }
    switch (SSL_get_error(ssl_, n)) {
      case SSL_ERROR_WANT_READ: return Next::kWait;
      case SSL_ERROR_WANT_WRITE: return Next::kWait;  // Arm asks for EPOLLOUT
      default: ERR_clear_error(); return Next::kClose;  // closed by the peer, or broken
    }
  }
}

std::pair<uint8_t*, size_t> Connection::InPlace() {
  if (inbound_.left == 0) return {nullptr, 0};
  const auto found = streams_.find(inbound_.stream);
  if (found == streams_.end() || found->second.replied) return {nullptr, 0};
  const auto [at, room] = found->second.reader.Space();
  const size_t budget = limits_.max_buffered_bytes - std::min(buffered_, limits_.max_buffered_bytes);
  return {at, std::min({room, inbound_.left, budget, size_t{kMaxFrame}})};
}

void Connection::Free(int32_t id, MessageReader* reader) {
  MessageBytes bytes = reader->Take();
  if (id == feeding_) parked_.push_back(std::move(bytes));  // nghttp2 is still reading from it
}

Connection::Next Connection::After(Next read) {
  const bool sent = nghttp2_session_send(session_) == 0;
  const bool flushed = Flush();
  if (read == Next::kClose || !sent || !flushed) return Next::kClose;
  const bool idle = !nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_);
  return idle && out_.empty() ? Next::kClose : read;  // e.g. after GOAWAY, once the last call replied
}

bool Connection::Flush() {
  while (out_sent_ < out_.size()) {
    ERR_clear_error();
    const int n = SSL_write(ssl_, out_.data() + out_sent_, static_cast<int>(out_.size() - out_sent_));
    if (n > 0) {
      out_sent_ += static_cast<size_t>(n);
      continue;
    }
    const int err = SSL_get_error(ssl_, n);
    if (err != SSL_ERROR_WANT_WRITE && err != SSL_ERROR_WANT_READ) {
      ERR_clear_error();
      return false;
    }
    break;
  }
  if (out_sent_ == out_.size()) out_.clear(), out_sent_ = 0;
  return true;
}

void Connection::Arm() {
  if (closed_) return;
  epoll_event event{};
  // Our bytes wait for the socket, or OpenSSL does (mid-handshake, or a read that had to write).
  const bool write = !out_.empty() || SSL_want_write(ssl_);
  event.events = EPOLLIN | EPOLLONESHOT | (write ? EPOLLOUT : 0u);
  event.data.u64 = tag_;
  epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd_, &event);
}

void Connection::Respond(int32_t stream, Reply reply) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_ || !session_) return;  // the client has gone
  Submit(stream, std::move(reply));
  nghttp2_session_send(session_);
  Flush();  // a broken socket is noticed on its next event (EPOLLERR)
  if (!out_.empty()) Arm();  // the rest goes out on EPOLLOUT
}

void Connection::GoAway() {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_ || !session_) return;
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(session_),
                        NGHTTP2_NO_ERROR, nullptr, 0);
  nghttp2_session_send(session_);
  Flush();
  if (!out_.empty()) Arm();
}

bool Connection::Established() {
  std::lock_guard<std::mutex> lock(mu_);
  return session_ != nullptr;
}

bool Connection::Finished() {
  std::lock_guard<std::mutex> lock(mu_);
  return session_ && !nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_) &&
         out_.empty();
}

void Connection::Close() {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return;
  closed_ = true;
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd_, nullptr);
}

// --- requests ---

void Connection::HeadersDone(int32_t id, Stream* s, bool end_stream) {
  if (!IsGrpc(s->content_type)) {  // not gRPC at all: a plain HTTP answer, as the spec asks
    s->replied = true;
    const std::string status = "415";
    const nghttp2_nv headers[] = {Header(":status", status)};
    nghttp2_submit_response(session_, id, headers, 1, nullptr);
    return;
  }
  if (s->method != "POST") return Reject(id, s, Code::kUnimplemented, "gRPC calls are POST requests");
  if (!s->encoding.empty() && s->encoding != "identity") {
    return Reject(id, s, Code::kUnimplemented,
                  "grpc-encoding '" + s->encoding + "' is not supported; send requests uncompressed");
  }
  if (!s->timeout.empty()) {
    const auto timeout = ParseTimeout(s->timeout);
    if (!timeout) return Reject(id, s, Code::kInternal, "malformed grpc-timeout '" + s->timeout + "'");
    if (*timeout < kLongestTimeout) s->deadline = Clock::now() + *timeout;
  }
  if (end_stream) Finish(id, s);
}

void Connection::Finish(int32_t id, Stream* s) {
  if (s->replied) return;
  if (!s->reader.Complete()) {
    return Reject(id, s, Code::kInternal,
                  s->reader.Started() ? "the request ended inside its message" : "the request carried no message");
  }
  buffered_ -= s->buffered;
  s->buffered = 0;
  Call call{s->path, s->reader.Take(), s->deadline, std::move(s->traceparent), peer_};
  completed_->emplace_back(id, std::move(call));
}

void Connection::Reject(int32_t id, Stream* s, Code code, const std::string& message) {
  if (s->replied) return;
  s->replied = true;
  buffered_ -= s->buffered;
  s->buffered = 0;
  Free(id, &s->reader);  // what had arrived
  Submit(id, Reply{code, message, {}});
}

void Connection::Submit(int32_t id, Reply reply) {
  if (reply.code == Code::kOk && reply.body.size() > limits_.max_message_bytes) {
    reply = Reply{Code::kResourceExhausted,
                  "the response of " + std::to_string(reply.body.size()) + " bytes is over the server's limit of " +
                      std::to_string(limits_.max_message_bytes) + " bytes",
                  {}};
  }
  const std::string ok = "200", grpc = "application/grpc";
  if (reply.code == Code::kOk) {
    replies_[id] = Outgoing{Framed(reply.body), 0};
    const nghttp2_nv headers[] = {Header(":status", ok), Header("content-type", grpc)};
    nghttp2_data_provider body{};
    body.read_callback = ReadReply;
    if (nghttp2_submit_response(session_, id, headers, 2, &body) != 0) replies_.erase(id);  // stream gone
    return;
  }
  const std::string status = std::to_string(static_cast<int>(reply.code));
  const std::string message = PercentEncode(reply.message);
  const nghttp2_nv trailers_only[] = {Header(":status", ok), Header("content-type", grpc),
                                      Header("grpc-status", status), Header("grpc-message", message)};
  nghttp2_submit_response(session_, id, trailers_only, 4, nullptr);
}

// --- nghttp2 callbacks ---

ssize_t Connection::OnSend(nghttp2_session*, const uint8_t* data, size_t n, int, void* self) {
  Connection* c = Self(self);
  if (c->out_.size() - c->out_sent_ > kMaxPendingOut) return NGHTTP2_ERR_WOULDBLOCK;  // a slow reader
  c->out_.append(reinterpret_cast<const char*>(data), n);
  return static_cast<ssize_t>(n);
}

int Connection::OnBeginFrame(nghttp2_session*, const nghttp2_frame_hd* hd, void* self) {
  Connection* c = Self(self);
  const bool plain_data = hd->type == NGHTTP2_DATA && !(hd->flags & NGHTTP2_FLAG_PADDED);
  c->inbound_ = Inbound{plain_data ? hd->stream_id : 0, plain_data ? hd->length : 0, c->inbound_.serial + 1};
  return 0;
}

int Connection::OnBeginHeaders(nghttp2_session*, const nghttp2_frame* frame, void* self) {
  if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
    Connection* c = Self(self);
    c->streams_.emplace(frame->hd.stream_id, Stream(c->limits_.max_message_bytes));
  }
  return 0;
}

int Connection::OnHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t name_len,
                         const uint8_t* value, size_t value_len, uint8_t, void* self) {
  Connection* c = Self(self);
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  const auto found = c->streams_.find(frame->hd.stream_id);
  if (found == c->streams_.end()) return 0;
  const std::string_view key(reinterpret_cast<const char*>(name), name_len);
  const std::string_view text(reinterpret_cast<const char*>(value), value_len);
  Stream& s = found->second;
  if (key == "traceparent") {
    if (value_len <= kMaxTraceParent) s.traceparent = text;  // junk is dropped, not kept
    return 0;
  }
  std::string* slot = key == ":path"          ? &s.path
                      : key == ":method"      ? &s.method
                      : key == "content-type" ? &s.content_type
                      : key == "grpc-encoding" ? &s.encoding
                      : key == "grpc-timeout" ? &s.timeout
                                              : nullptr;
  if (slot == nullptr) return 0;
  if (value_len > kMaxHeaderValue) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // resets the stream
  slot->assign(text);
  return 0;
}

int Connection::OnFrame(nghttp2_session*, const nghttp2_frame* frame, void* self) {
  Connection* c = Self(self);
  const bool end = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
  if (frame->hd.type != NGHTTP2_HEADERS && !(frame->hd.type == NGHTTP2_DATA && end)) return 0;
  const auto found = c->streams_.find(frame->hd.stream_id);
  if (found == c->streams_.end()) return 0;
  if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
    c->HeadersDone(frame->hd.stream_id, &found->second, end);
  } else if (end) {
    c->Finish(frame->hd.stream_id, &found->second);  // after DATA, or the client's trailers
  }
  return 0;
}

int Connection::OnData(nghttp2_session*, uint8_t, int32_t id, const uint8_t* data, size_t n, void* self) {
  Connection* c = Self(self);
  if (id == c->inbound_.stream) c->inbound_.left -= std::min(n, c->inbound_.left);
  const auto found = c->streams_.find(id);
  if (found == c->streams_.end() || found->second.replied) return 0;
  Stream* s = &found->second;
  if (c->buffered_ + n > c->limits_.max_buffered_bytes) {
    c->Reject(id, s, Code::kResourceExhausted,
              "more than " + std::to_string(c->limits_.max_buffered_bytes >> 20) +
                  " MiB of requests are arriving on this connection at once; spread them over more connections");
    return 0;
  }
  const MessageReader::Status status = s->reader.Feed(data, n);
  c->buffered_ += n;
  s->buffered += n;
  switch (status) {
    case MessageReader::Status::kOk: break;
    case MessageReader::Status::kTooLarge:
      c->Reject(id, s, Code::kResourceExhausted,
                "the request message of " + std::to_string(s->reader.Declared()) +
                    " bytes is over the server's limit of " + std::to_string(c->limits_.max_message_bytes) +
                    " bytes (--max-message-mib)");
      break;
    case MessageReader::Status::kCompressed:
      c->Reject(id, s, Code::kUnimplemented, "compressed request messages are not supported; send them uncompressed");
      break;
    case MessageReader::Status::kSecondMessage:
      c->Reject(id, s, Code::kInternal, "a unary call carries exactly one request message; this one sent more");
      break;
  }
  return 0;
}

// A refused call's trailers are on the wire: now ask the client to stop sending
// the rest of its request. (Sent before them, the reset would race the status.)
int Connection::OnFrameSent(nghttp2_session* session, const nghttp2_frame* frame, void* self) {
  Connection* c = Self(self);
  const int32_t id = frame->hd.stream_id;
  if (frame->hd.type != NGHTTP2_HEADERS || !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) return 0;
  const auto found = c->streams_.find(id);
  if (found != c->streams_.end() && found->second.replied && nghttp2_session_get_stream_remote_close(session, id) == 0) {
    nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, id, NGHTTP2_NO_ERROR);
  }
  return 0;
}

int Connection::OnStreamClose(nghttp2_session*, int32_t id, uint32_t, void* self) {
  Connection* c = Self(self);
  const auto found = c->streams_.find(id);
  if (found != c->streams_.end()) {
    c->buffered_ -= found->second.buffered;
    c->Free(id, &found->second.reader);
    c->streams_.erase(found);
  }
  c->replies_.erase(id);
  return 0;
}

ssize_t Connection::ReadReply(nghttp2_session* session, int32_t id, uint8_t* buf, size_t n, uint32_t* flags,
                              nghttp2_data_source*, void* self) {
  Connection* c = Self(self);
  const auto found = c->replies_.find(id);
  if (found == c->replies_.end()) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  Outgoing& out = found->second;
  const size_t take = std::min(n, out.bytes.size() - out.sent);
  std::memcpy(buf, out.bytes.data() + out.sent, take);
  out.sent += take;
  if (out.sent == out.bytes.size()) {
    *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;  // the trailers end the stream
    const std::string status = "0";
    const nghttp2_nv trailers[] = {Header("grpc-status", status)};
    nghttp2_submit_trailer(session, id, trailers, 1);
    c->replies_.erase(found);
  }
  return static_cast<ssize_t>(take);
}

const nghttp2_session_callbacks* Connection::Callbacks() {
  static const nghttp2_session_callbacks* callbacks = [] {
    nghttp2_session_callbacks* cb = nullptr;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_send_callback(cb, OnSend);
    nghttp2_session_callbacks_set_on_begin_frame_callback(cb, OnBeginFrame);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, OnBeginHeaders);
    nghttp2_session_callbacks_set_on_header_callback(cb, OnHeader);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, OnFrame);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, OnData);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, OnStreamClose);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, OnFrameSent);
    return cb;
  }();
  return callbacks;
}

}  // namespace s3ml::dataplane
