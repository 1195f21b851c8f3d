#include "services/model_server/native/framing.h"

#include <unistd.h>

#include <cerrno>
#include <stdexcept>
#include <string>

namespace s3ml::dataplane {
namespace {

// Reads exactly `n` bytes; returns how many arrived before end of stream.
size_t ReadFull(int fd, char* buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    const ssize_t r = read(fd, buf + got, n - got);
    if (r == 0) break;
    if (r < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error("read from the supervisor failed: errno " + std::to_string(errno));
    }
    got += static_cast<size_t>(r);
  }
  return got;
}

// Writes all `n` bytes; false if the pipe failed (EPIPE: the supervisor is gone).
bool WriteFull(int fd, const char* buf, size_t n) {
  while (n > 0) {
    const ssize_t w = write(fd, buf, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    buf += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

}  // namespace

bool ReadFrame(int fd, google::protobuf::Message* message) {
  unsigned char header[4];
  const size_t got = ReadFull(fd, reinterpret_cast<char*>(header), sizeof header);
  if (got == 0) return false;
  if (got != sizeof header) throw std::runtime_error("torn frame header from the supervisor");
  const uint32_t size = (uint32_t{header[0]} << 24) | (uint32_t{header[1]} << 16) |
                        (uint32_t{header[2]} << 8) | uint32_t{header[3]};
  if (size > kMaxFrame) throw std::runtime_error("frame of " + std::to_string(size) + " bytes is too large");
  std::string body(size, '\0');
  if (ReadFull(fd, body.data(), size) != size) throw std::runtime_error("torn frame from the supervisor");
  const bool ok = message->ParseFromString(body);
  std::fill(body.begin(), body.end(), '\0');  // the first frame carries the TLS key
  if (!ok) throw std::runtime_error("malformed " + message->GetTypeName() + " from the supervisor");
  return true;
}

bool FrameWriter::Write(const google::protobuf::Message& message) {
  const std::string body = message.SerializeAsString();
  const uint32_t size = static_cast<uint32_t>(body.size());
  const char header[4] = {static_cast<char>(size >> 24), static_cast<char>(size >> 16),
                          static_cast<char>(size >> 8), static_cast<char>(size)};
  std::lock_guard<std::mutex> lock(mu_);
  // A frame cut short leaves the stream out of step for good: after a failure, nothing.
  gone_ = gone_ || !WriteFull(fd_, header, sizeof header) || !WriteFull(fd_, body.data(), body.size());
  return !gone_;
}

}  // namespace s3ml::dataplane
