// gRPC's framing on HTTP/2 (the PROTOCOL-HTTP2 spec): length-prefixed messages
// in DATA frames, grpc-timeout in the request headers, grpc-status and a
// percent-encoded grpc-message in the trailers.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace s3ml::dataplane {

constexpr size_t kPrefixBytes = 5;  // compressed flag, then the big-endian length

// "100m", "5S", ...: at most 8 digits and a unit (H M S m u n); nullopt when malformed.
std::optional<std::chrono::nanoseconds> ParseTimeout(std::string_view value);

// grpc-message: bytes outside printable ASCII, and '%', as %XX.
std::string PercentEncode(std::string_view text);

// The 5-byte prefix of an uncompressed message of `length` bytes.
std::string Prefix(size_t length);

// The 5-byte prefix followed by `message`.
std::string Framed(const std::string& message);

// A received message, placed so that it ends on a 64-byte boundary. A KServe request
// ends with its tensors' bytes (raw_input_contents is its last field), and a tensor's
// size is mostly a multiple of 64: the runtime can then read the tensor where it lies
// (LiteRt takes host memory 64-byte aligned) instead of a copy of it.
class MessageBytes {
 public:
  static constexpr size_t kAlignment = 64;

  MessageBytes() = default;
  MessageBytes(MessageBytes&& other) noexcept;  // leaves `other` empty
  MessageBytes& operator=(MessageBytes&& other) noexcept;
  const char* data() const { return begin_; }
  size_t size() const { return size_; }
  std::string_view view() const { return {begin_, size_}; }
  // Room for `length` bytes in all (growing from `reserve`), keeping what is there.
  void Reserve(size_t length, size_t reserve);
  // Where the next bytes go, and how many fit before the storage must grow.
  char* tail() { return begin_ + size_; }
  size_t room() const { return capacity_ - size_; }
  // Appends `n` bytes; bytes already written at tail() (received in place) are not copied.
  void Append(const uint8_t* bytes, size_t n);

 private:
  std::unique_ptr<char[]> storage_;
  char* begin_ = nullptr;
  size_t size_ = 0;
  size_t capacity_ = 0;
  size_t length_ = 0;  // the whole message's length, which ends aligned
};

// Assembles the one request message of a unary call from its DATA frames.
class MessageReader {
 public:
  enum class Status { kOk, kTooLarge, kCompressed, kSecondMessage };

  explicit MessageReader(size_t max_bytes) : max_bytes_(max_bytes) {}
  // Takes the next bytes of the stream; the first problem met is returned (and sticks).
  Status Feed(const uint8_t* data, size_t n);
  bool Complete() const { return done_ && have_prefix_ == 0; }  // exactly one whole message
  bool Started() const { return done_ || have_prefix_ > 0; }
  uint32_t Declared() const { return length_; }  // the length its prefix announced
  MessageBytes Take() { return std::move(message_); }
  // Where the message's next bytes may be received in place (then passed to Feed as
  // they lie), and how many: none outside a message body, or after a problem.
  std::pair<uint8_t*, size_t> Space();

 private:
  const size_t max_bytes_;
  uint8_t prefix_[kPrefixBytes] = {};
  size_t have_prefix_ = 0;
  uint32_t length_ = 0;
  bool in_body_ = false;
  bool done_ = false;
  MessageBytes message_;
  Status status_ = Status::kOk;
};

}  // namespace s3ml::dataplane
