#include "services/model_server/native/wire.h"

#include <algorithm>
#include <cctype>

namespace s3ml::dataplane {
namespace {

// Reserve at most this much up front: a prefix may announce far more than the client sends.
constexpr size_t kMaxReserve = 4u << 20;

}  // namespace

std::optional<std::chrono::nanoseconds> ParseTimeout(std::string_view value) {
  if (value.size() < 2 || value.size() > 9) return std::nullopt;
  int64_t amount = 0;
  for (char c : value.substr(0, value.size() - 1)) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return std::nullopt;
    amount = amount * 10 + (c - '0');
  }
  using namespace std::chrono;
  switch (value.back()) {
    case 'H': return duration_cast<nanoseconds>(hours(amount));
    case 'M': return duration_cast<nanoseconds>(minutes(amount));
    case 'S': return duration_cast<nanoseconds>(seconds(amount));
    case 'm': return duration_cast<nanoseconds>(milliseconds(amount));
    case 'u': return duration_cast<nanoseconds>(microseconds(amount));
    case 'n': return nanoseconds(amount);
    default: return std::nullopt;
  }
}

std::string PercentEncode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (unsigned char c : text) {
    if (c >= 0x20 && c <= 0x7e && c != '%') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    }
  }
  return out;
}

std::string Prefix(size_t length) {
  const auto n = static_cast<uint32_t>(length);
  std::string out(1, '\0');  // not compressed
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((n >> shift) & 0xff));
  return out;
}

std::string Framed(const std::string& message) {
  std::string out = Prefix(message.size());
  out.reserve(kPrefixBytes + message.size());
  out += message;
  return out;
}

MessageReader::Status MessageReader::Feed(const uint8_t* data, size_t n) {
  while (n > 0 && status_ == Status::kOk) {
    if (!in_body_) {
      if (done_) return status_ = Status::kSecondMessage;  // unary: one message only
      const size_t take = std::min(n, kPrefixBytes - have_prefix_);
      std::copy(data, data + take, prefix_ + have_prefix_);
      have_prefix_ += take, data += take, n -= take;
      if (have_prefix_ < kPrefixBytes) break;
      if (prefix_[0] & 1) return status_ = Status::kCompressed;
      length_ = static_cast<uint32_t>(prefix_[1]) << 24 | static_cast<uint32_t>(prefix_[2]) << 16 |
                static_cast<uint32_t>(prefix_[3]) << 8 | prefix_[4];
      if (length_ > max_bytes_) return status_ = Status::kTooLarge;
      message_.reserve(std::min<size_t>(length_, kMaxReserve));
      in_body_ = true;
    }
    const size_t take = std::min(n, static_cast<size_t>(length_) - message_.size());
    message_.append(reinterpret_cast<const char*>(data), take);
    data += take, n -= take;
    if (message_.size() == length_) {
      in_body_ = false;
      have_prefix_ = 0;
      done_ = true;
    }
  }
  return status_;
}

}  // namespace s3ml::dataplane
