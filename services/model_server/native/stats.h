// Request counters for the supervisor's Prometheus exporter: calls by model and
// code, a latency histogram per model, in-flight and queued calls. Cumulative,
// so a lost report loses nothing.
#pragma once

#include <atomic>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "s3ml/model_server/v1/dataplane.pb.h"

namespace s3ml::dataplane {

class Stats {
 public:
  void Record(const std::string& model, const char* code, double seconds);
  s3ml::model_server::v1::Stats Snapshot() const;

  std::atomic<int64_t> in_flight{0};
  std::atomic<int64_t> queue_depth{0};

 private:
  struct Latency {
    std::vector<uint64_t> buckets;
    uint64_t count = 0;
    double sum = 0;
  };
  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::string>, uint64_t> calls_;
  std::map<std::string, Latency> latency_;
};

// Admission: beyond `interpreters + queue` calls in flight, refuse early
// (RESOURCE_EXHAUSTED) rather than let waiting calls pile up.
class Admission {
 public:
  Admission(Stats* stats, int64_t interpreters, int64_t queue)
      : stats_(stats), interpreters_(interpreters), limit_(interpreters + queue) {}

  class Ticket {
   public:
    explicit Ticket(Admission* a) : a_(a) {}
    Ticket(Ticket&& other) noexcept : a_(other.a_) { other.a_ = nullptr; }
    Ticket(const Ticket&) = delete;
    ~Ticket() {
      if (a_) a_->Leave();
    }

   private:
    Admission* a_;
  };
  Ticket Enter();  // throws CallError(RESOURCE_EXHAUSTED)

 private:
  void Leave();
  void Publish(int64_t in_flight);
  Stats* stats_;
  const int64_t interpreters_;
  const int64_t limit_;
  std::mutex mu_;
  int64_t in_flight_ = 0;
};

}  // namespace s3ml::dataplane
