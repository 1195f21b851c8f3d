// Length-framed protobuf messages over a pipe: a 4-byte big-endian length, then
// the message. The supervisor and the data plane talk only this way, so secrets
// and decrypted models cross from one to the other without touching the disk.
#pragma once

#include <google/protobuf/message.h>

#include <cstdint>
#include <mutex>

namespace s3ml::dataplane {

constexpr uint32_t kMaxFrame = 1u << 30;  // decrypted models ride in the first frame

// False on a clean end of stream; throws std::runtime_error on a torn or bad frame.
bool ReadFrame(int fd, google::protobuf::Message* message);

class FrameWriter {
 public:
  explicit FrameWriter(int fd) : fd_(fd) {}
  // Whole frames, from any thread. False once the supervisor is gone (its end of the
  // pipe closed, e.g. it was killed): the stream is over, and later writes do not try.
  // Not an exception: a dead supervisor must not fail the calls the data plane drains.
  bool Write(const google::protobuf::Message& message);

 private:
  int fd_;
  std::mutex mu_;
  bool gone_ = false;  // guarded by mu_
};

}  // namespace s3ml::dataplane
