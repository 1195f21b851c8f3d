#include <utility>

#include "services/model_server/native/runtime.h"

namespace s3ml::dataplane {

InterpreterPool::InterpreterPool(const std::string& tflite, int size, int threads) {
  for (int i = 0; i < size; ++i) {
    all_.push_back(MakeInterpreter(tflite, threads));
    free_.push_back(all_.back().get());
  }
}

void InterpreterPool::Submit(Job job, std::chrono::system_clock::time_point deadline,
                             std::function<void()> expired) {
  Interpreter* it = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (free_.empty()) {
      waiting_.push_back(Waiting{std::move(job), deadline, std::move(expired)});
      return;
    }
    it = free_.back();
    free_.pop_back();
  }
  Drive(it, std::move(job));
}

// Runs `job`, then the waiting jobs in turn, until none is left; then frees `it`.
void InterpreterPool::Drive(Interpreter* it, Job job) {
  while (job) {
    job(it);
    job = nullptr;
    std::vector<std::function<void()>> late;
    {
      std::lock_guard<std::mutex> lock(mu_);
      const auto now = std::chrono::system_clock::now();
      while (!waiting_.empty() && !job) {
        Waiting next = std::move(waiting_.front());
        waiting_.pop_front();
        if (next.deadline <= now) {
          late.push_back(std::move(next.expired));
        } else {
          job = std::move(next.job);
        }
      }
      if (!job) free_.push_back(it);
    }
    for (auto& reply : late) reply();
  }
}

}  // namespace s3ml::dataplane
