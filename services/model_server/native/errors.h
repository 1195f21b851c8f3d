// Errors of one call, each carrying the gRPC status it maps to.
//
// Domain code throws CallError; the service turns it into a status in one place
// (service.cc, Guard), so a bad request always gets a precise code and an
// actionable message, and never takes the process down.
#pragma once

#include <stdexcept>
#include <string>

namespace s3ml::dataplane {

// The gRPC status codes, numbered as on the wire (grpc-status), so the data
// plane needs no gRPC library to speak them.
enum class Code : int {
  kOk = 0,
  kCancelled = 1,
  kUnknown = 2,
  kInvalidArgument = 3,
  kDeadlineExceeded = 4,
  kNotFound = 5,
  kAlreadyExists = 6,
  kPermissionDenied = 7,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kAborted = 10,
  kOutOfRange = 11,
  kUnimplemented = 12,
  kInternal = 13,
  kUnavailable = 14,
  kDataLoss = 15,
  kUnauthenticated = 16,
};

// The code's canonical name, as the metrics label it ("OK", "NOT_FOUND", ...).
const char* CodeName(Code code);

class CallError : public std::runtime_error {
 public:
  CallError(Code code, const std::string& message) : std::runtime_error(message), code_(code) {}
  Code code() const { return code_; }

 private:
  Code code_;
};

inline CallError InvalidInput(const std::string& m) { return CallError(Code::kInvalidArgument, m); }
inline CallError NotFound(const std::string& m) { return CallError(Code::kNotFound, m); }
inline CallError Overloaded(const std::string& m) { return CallError(Code::kResourceExhausted, m); }
inline CallError Deadline(const std::string& m) { return CallError(Code::kDeadlineExceeded, m); }

}  // namespace s3ml::dataplane
