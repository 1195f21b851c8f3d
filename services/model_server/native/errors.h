// Errors of one call, each carrying the gRPC status it maps to.
//
// Domain code throws CallError; the servicer turns it into a Status in one place
// (service.cc, Guard), so a bad request always gets a precise code and an
// actionable message, and never takes the process down.
#pragma once

#include <grpcpp/grpcpp.h>

#include <stdexcept>
#include <string>

namespace s3ml::dataplane {

class CallError : public std::runtime_error {
 public:
  CallError(grpc::StatusCode code, const std::string& message)
      : std::runtime_error(message), code_(code) {}
  grpc::StatusCode code() const { return code_; }

 private:
  grpc::StatusCode code_;
};

inline CallError InvalidInput(const std::string& m) {
  return CallError(grpc::StatusCode::INVALID_ARGUMENT, m);
}
inline CallError NotFound(const std::string& m) {
  return CallError(grpc::StatusCode::NOT_FOUND, m);
}
inline CallError Overloaded(const std::string& m) {
  return CallError(grpc::StatusCode::RESOURCE_EXHAUSTED, m);
}
inline CallError Deadline(const std::string& m) {
  return CallError(grpc::StatusCode::DEADLINE_EXCEEDED, m);
}

// The status code's canonical name, as the metrics label it ("OK", "NOT_FOUND", ...).
const char* CodeName(grpc::StatusCode code);

}  // namespace s3ml::dataplane
