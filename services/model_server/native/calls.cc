#include "services/model_server/native/calls.h"

#include <chrono>
#include <utility>

namespace s3ml::dataplane {

uint64_t UnixNanos() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
}

void CallLog::Add(s3ml::model_server::v1::CallRecord record) {
  std::lock_guard<std::mutex> lock(mu_);
  if (pending_.calls_size() >= kMaxPending) {
    pending_.set_dropped(pending_.dropped() + 1);
    return;
  }
  *pending_.add_calls() = std::move(record);
}

s3ml::model_server::v1::Calls CallLog::Drain() {
  s3ml::model_server::v1::Calls out;
  std::lock_guard<std::mutex> lock(mu_);
  out.Swap(&pending_);
  return out;
}

}  // namespace s3ml::dataplane
