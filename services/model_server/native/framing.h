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
  void Write(const google::protobuf::Message& message);  // whole frames, from any thread

 private:
  int fd_;
  std::mutex mu_;
};

}  // namespace s3ml::dataplane
