// gRPC's framing on HTTP/2 (the PROTOCOL-HTTP2 spec): length-prefixed messages
// in DATA frames, grpc-timeout in the request headers, grpc-status and a
// percent-encoded grpc-message in the trailers.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

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
  std::string Take() { return std::move(message_); }

 private:
  const size_t max_bytes_;
  uint8_t prefix_[kPrefixBytes] = {};
  size_t have_prefix_ = 0;
  uint32_t length_ = 0;
  bool in_body_ = false;
  bool done_ = false;
  std::string message_;
  Status status_ = Status::kOk;
};

}  // namespace s3ml::dataplane
