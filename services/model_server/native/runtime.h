// One TFLite interpreter, and a pool of them per model, so concurrent calls run
// in parallel on separate cores instead of queueing on one.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
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

// A model's interpreters. A job that finds them all busy waits in a queue, not
// on a thread: the thread that finishes with an interpreter runs the next
// waiting job itself, already awake, instead of waking another one.
class InterpreterPool {
 public:
  using Job = std::function<void(Interpreter*)>;  // has the interpreter to itself while it runs

  InterpreterPool(const std::string& tflite, int size, int threads);

  // Runs `job` on this thread if an interpreter is free, else queues it. A queued
  // job whose `deadline` has passed when its turn comes gets `expired()` instead.
  void Submit(Job job, std::chrono::system_clock::time_point deadline, std::function<void()> expired);
  int size() const { return static_cast<int>(all_.size()); }

 private:
  struct Waiting {
    Job job;
    std::chrono::system_clock::time_point deadline;
    std::function<void()> expired;
  };
  void Drive(Interpreter* it, Job job);

  std::vector<std::unique_ptr<Interpreter>> all_;
  std::vector<Interpreter*> free_;
  std::deque<Waiting> waiting_;
  std::mutex mu_;
};

}  // namespace s3ml::dataplane
