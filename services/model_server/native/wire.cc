#include "services/model_server/native/wire.h"

#include <algorithm>
#include <cctype>
#include <cstring>

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

MessageBytes::MessageBytes(MessageBytes&& other) noexcept { *this = std::move(other); }

MessageBytes& MessageBytes::operator=(MessageBytes&& other) noexcept {
  storage_ = std::move(other.storage_);
  begin_ = std::exchange(other.begin_, nullptr);
  size_ = std::exchange(other.size_, 0);
  capacity_ = std::exchange(other.capacity_, 0);
  length_ = std::exchange(other.length_, 0);
  return *this;
}

void MessageBytes::Reserve(size_t length, size_t reserve) {
  length_ = length;
  capacity_ = std::max(std::min(reserve, length), size_);
  std::unique_ptr<char[]> storage(new char[capacity_ + kAlignment]);  // not zeroed: it is written before read
  // The offset that puts byte `length` (one past the end) on a 64-byte boundary.
  const auto base = reinterpret_cast<uintptr_t>(storage.get());
  const size_t offset = (kAlignment - (base + length) % kAlignment) % kAlignment;
  char* begin = storage.get() + offset;
  if (size_ > 0) std::memcpy(begin, begin_, size_);
  storage_ = std::move(storage);
  begin_ = begin;
}

void MessageBytes::Append(const uint8_t* bytes, size_t n) {
  if (n > room()) Reserve(length_, std::max(2 * capacity_, size_ + n));
  char* to = tail();
  if (reinterpret_cast<const char*>(bytes) != to) std::memmove(to, bytes, n);  // memmove: may lie in our room
  size_ += n;
}

std::pair<uint8_t*, size_t> MessageReader::Space() {
  if (!in_body_ || status_ != Status::kOk) return {nullptr, 0};
  const size_t left = static_cast<size_t>(length_) - message_.size();
  return {reinterpret_cast<uint8_t*>(message_.tail()), std::min(left, message_.room())};
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
      message_.Reserve(length_, kMaxReserve);
      in_body_ = true;
    }
    const size_t take = std::min(n, static_cast<size_t>(length_) - message_.size());
    message_.Append(data, take);
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
