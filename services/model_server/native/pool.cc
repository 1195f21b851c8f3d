#include "services/model_server/native/errors.h"
#include "services/model_server/native/runtime.h"

namespace s3ml::dataplane {

InterpreterPool::InterpreterPool(const std::string& tflite, int size, int threads) {
  for (int i = 0; i < size; ++i) {
    all_.push_back(MakeInterpreter(tflite, threads));
    free_.push_back(all_.back().get());
  }
}

InterpreterPool::Lease::~Lease() {
  if (it_ == nullptr) return;
  {
    std::lock_guard<std::mutex> lock(pool_->mu_);
    pool_->free_.push_back(it_);
  }
  pool_->cv_.notify_one();
}

InterpreterPool::Lease InterpreterPool::Acquire(std::chrono::system_clock::time_point deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!cv_.wait_until(lock, deadline, [this] { return !free_.empty(); })) {
    throw Deadline("deadline passed while waiting for an interpreter");
  }
  Interpreter* it = free_.back();
  free_.pop_back();
  return Lease(this, it);
}

}  // namespace s3ml::dataplane
