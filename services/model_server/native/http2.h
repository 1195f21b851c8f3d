// One client connection: TLS (OpenSSL, non-blocking, on the socket) carrying
// HTTP/2 (nghttp2) carrying unary gRPC calls.
//
// It sits in the server's epoll set with EPOLLONESHOT: the thread that takes an
// event reads, parses and hands complete calls out, then re-arms it. Whichever
// thread finishes a call writes its reply (Respond). One mutex per connection
// serializes them, as neither OpenSSL nor nghttp2 sessions are thread-safe.
#pragma once

#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "services/model_server/native/rpc.h"
#include "services/model_server/native/wire.h"

namespace s3ml::dataplane {

struct ConnectionLimits {
  size_t max_message_bytes = 4u << 20;   // per request and per reply
  size_t max_buffered_bytes = 64u << 20;  // request bytes being assembled on one connection
  uint32_t max_streams = 100;             // concurrent calls on one connection
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  // Takes ownership of `fd` and `ssl`; joins `epoll_fd`'s set (armed for EPOLLIN) as `tag`.
  Connection(int fd, SSL* ssl, int epoll_fd, uint64_t tag, ConnectionLimits limits);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  enum class Next { kWait, kAgain, kClose };  // wait for epoll, come back soon, or close it
  // On an epoll event (or kAgain); re-arms the connection unless it is to close.
  // Complete calls go to `calls`.
  Next OnReady(std::vector<uint8_t>* scratch, std::vector<std::pair<int32_t, Call>>* calls);
  // Any thread: the reply to the call on `stream`.
  void Respond(int32_t stream, Reply reply);
  void GoAway();  // graceful: no new calls; the connection ends once the open ones have replied
  void Close();   // leave the epoll set; replies still coming are dropped
  bool Finished();  // every call replied after GOAWAY: nothing more to do
  bool Established();
  std::chrono::steady_clock::time_point accepted() const { return accepted_; }

 private:
  struct Stream {
    explicit Stream(size_t max_bytes) : reader(max_bytes) {}
    std::string path, method, content_type, encoding, traceparent, timeout;
    Clock::time_point deadline = Clock::time_point::max();
    MessageReader reader;
    size_t buffered = 0;    // bytes counted against the connection's budget
    bool replied = false;   // refused already: the rest of the request is ignored
  };
  struct Outgoing {
    std::string bytes;  // the framed reply message
    size_t sent = 0;
  };

  Next Handshake();
  bool StartSession();  // false when nghttp2 cannot allocate a session
  Next ReadAll(std::vector<uint8_t>* scratch);
  std::pair<uint8_t*, size_t> InPlace();  // where the DATA payload arriving next may be decrypted
  void Free(int32_t id, MessageReader* reader);  // a dropped stream's message, once nghttp2 is done with it
  bool Flush();  // false on a broken connection
  void Arm();  // re-arms the oneshot registration: EPOLLIN, and EPOLLOUT while bytes wait
  Next After(Next read);

  // nghttp2 callbacks, with mu_ held (from ReadAll or Respond).
  static ssize_t OnSend(nghttp2_session*, const uint8_t* data, size_t n, int, void* self);
  static int OnBeginFrame(nghttp2_session*, const nghttp2_frame_hd* hd, void* self);
  static int OnBeginHeaders(nghttp2_session*, const nghttp2_frame* frame, void* self);
  static int OnHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t name_len,
                      const uint8_t* value, size_t value_len, uint8_t, void* self);
  static int OnFrame(nghttp2_session*, const nghttp2_frame* frame, void* self);
  static int OnData(nghttp2_session*, uint8_t, int32_t stream, const uint8_t* data, size_t n, void* self);
  static int OnFrameSent(nghttp2_session*, const nghttp2_frame* frame, void* self);
  static int OnStreamClose(nghttp2_session*, int32_t stream, uint32_t, void* self);
  static ssize_t ReadReply(nghttp2_session*, int32_t stream, uint8_t* buf, size_t n, uint32_t* flags,
                           nghttp2_data_source*, void* self);
  static const nghttp2_session_callbacks* Callbacks();

  void HeadersDone(int32_t id, Stream* stream, bool end_stream);
  void Finish(int32_t id, Stream* stream);
  void Reject(int32_t id, Stream* stream, Code code, const std::string& message);
  void Submit(int32_t id, Reply reply);

  const int fd_;
  SSL* const ssl_;
  const int epoll_fd_;
  const uint64_t tag_;
  const ConnectionLimits limits_;
  const std::chrono::steady_clock::time_point accepted_ = std::chrono::steady_clock::now();

  std::mutex mu_;
  nghttp2_session* session_ = nullptr;  // once the handshake is done
  std::shared_ptr<const PeerCert> peer_;
  bool closed_ = false;
  std::string out_;        // plaintext waiting for SSL_write
  size_t out_sent_ = 0;
  size_t buffered_ = 0;
  std::map<int32_t, Stream> streams_;
  std::map<int32_t, Outgoing> replies_;
  std::vector<std::pair<int32_t, Call>>* completed_ = nullptr;  // during ReadAll
  // The unpadded DATA frame being received: its stream and payload bytes still to come.
  // Those bytes are decrypted straight into the stream's message (InPlace).
  struct Inbound {
    int32_t stream = 0;
    size_t left = 0;
    uint64_t serial = 0;  // counts frames begun
  } inbound_;
  int32_t feeding_ = 0;               // the stream whose message nghttp2 is reading from now
  std::vector<MessageBytes> parked_;  // its message, if dropped meanwhile: freed once nghttp2 is done
};

}  // namespace s3ml::dataplane
