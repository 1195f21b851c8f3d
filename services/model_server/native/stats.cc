#include "services/model_server/native/stats.h"

#include <algorithm>

#include "services/model_server/native/errors.h"

namespace s3ml::dataplane {
namespace {

// The Python plane's histogram buckets (api.py), so dashboards read both planes alike.
const std::vector<double>& Bounds() {
  static const auto* bounds = new std::vector<double>{0.0005, 0.001, 0.002, 0.005, 0.01, 0.02,
                                                      0.05,   0.1,   0.2,   0.5,   1.0,  2.0};
  return *bounds;
}

}  // namespace

void Stats::Record(const std::string& model, const char* code, double seconds) {
  const auto& bounds = Bounds();
  const size_t bucket = std::lower_bound(bounds.begin(), bounds.end(), seconds) - bounds.begin();
  std::lock_guard<std::mutex> lock(mu_);
  ++calls_[{model, code}];
  Latency& l = latency_[model];
  if (l.buckets.empty()) l.buckets.assign(bounds.size() + 1, 0);  // the last one is +Inf
  ++l.buckets[bucket];
  ++l.count;
  l.sum += seconds;
}

s3ml::model_server::v1::Stats Stats::Snapshot() const {
  s3ml::model_server::v1::Stats out;
  for (double b : Bounds()) out.add_bounds_seconds(b);
  out.set_in_flight(in_flight.load());
  out.set_queue_depth(queue_depth.load());
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [key, count] : calls_) {
    auto* c = out.add_calls();
    c->set_model(key.first);
    c->set_code(key.second);
    c->set_count(count);
  }
  for (const auto& [model, l] : latency_) {
    auto* h = out.add_latency();
    h->set_model(model);
    for (uint64_t n : l.buckets) h->add_bucket_counts(n);
    h->set_count(l.count);
    h->set_sum_seconds(l.sum);
  }
  return out;
}

Admission::Ticket Admission::Enter() {
  std::lock_guard<std::mutex> lock(mu_);
  if (in_flight_ >= limit_) {
    throw Overloaded("server busy: " + std::to_string(in_flight_) + " requests in flight (limit " +
                     std::to_string(limit_) + "); retry with backoff");
  }
  Publish(++in_flight_);
  return Ticket(this);
}

void Admission::Leave() {
  std::lock_guard<std::mutex> lock(mu_);
  Publish(--in_flight_);
}

void Admission::Publish(int64_t in_flight) {
  stats_->in_flight = in_flight;
  stats_->queue_depth = std::max<int64_t>(0, in_flight - interpreters_);
}

}  // namespace s3ml::dataplane
