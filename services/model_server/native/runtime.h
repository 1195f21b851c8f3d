// One TFLite interpreter, and a pool of them per model, so concurrent calls run
// in parallel on separate cores instead of queueing on one.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace s3ml::dataplane {

// One interpreter; used by one call at a time. Implemented over the LiteRt C API (litert.cc).
class Interpreter {
 public:
  virtual ~Interpreter() = default;
  // One batch item: `inputs[i]` holds exactly the bytes of model input i.
  virtual void Run(const std::vector<std::string_view>& inputs) = 0;
  // Output i of the last Run, valid until the next Run.
  virtual std::string_view Output(size_t i) = 0;
};

// The model flatbuffer must outlive every interpreter built from it.
std::unique_ptr<Interpreter> MakeInterpreter(const std::string& tflite, int threads);

class InterpreterPool {
 public:
  InterpreterPool(const std::string& tflite, int size, int threads);

  // Holds one interpreter for the lifetime of the lease.
  class Lease {
   public:
    Lease(InterpreterPool* pool, Interpreter* it) : pool_(pool), it_(it) {}
    Lease(Lease&& other) noexcept : pool_(other.pool_), it_(other.it_) { other.it_ = nullptr; }
    Lease(const Lease&) = delete;
    ~Lease();
    Interpreter* operator->() const { return it_; }

   private:
    InterpreterPool* pool_;
    Interpreter* it_;
  };

  // Waits until `deadline` for a free interpreter; throws CallError(DEADLINE_EXCEEDED).
  Lease Acquire(std::chrono::system_clock::time_point deadline);
  int size() const { return static_cast<int>(all_.size()); }

 private:
  std::vector<std::unique_ptr<Interpreter>> all_;
  std::vector<Interpreter*> free_;
  std::mutex mu_;
  std::condition_variable cv_;
};

}  // namespace s3ml::dataplane
