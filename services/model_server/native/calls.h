// Served calls, kept for the supervisor to emit as OpenTelemetry spans. The data
// plane has no tracing SDK: it records when a call ran, how it ended and the
// caller's trace context (never tensor contents), and the supervisor's tracer
// turns each record into the same spans the Python plane makes.
#pragma once

#include <cstdint>
#include <mutex>

#include "s3ml/model_server/v1/dataplane.pb.h"

namespace s3ml::dataplane {

// Nanoseconds since the Unix epoch: the clock OpenTelemetry timestamps use.
uint64_t UnixNanos();

class CallLog {
 public:
  // Between two reports (one a second) at most this many calls are kept; the
  // rest are counted as dropped, as a span processor's full queue drops them.
  static constexpr int kMaxPending = 8192;

  void Add(s3ml::model_server::v1::CallRecord record);
  // The calls since the last Drain; empty when there were none.
  s3ml::model_server::v1::Calls Drain();

 private:
  std::mutex mu_;
  s3ml::model_server::v1::Calls pending_;
};

}  // namespace s3ml::dataplane
