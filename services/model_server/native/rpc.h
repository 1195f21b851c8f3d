// One unary gRPC call as the transport (http2.cc) hands it to a service, and the
// service's reply. The transport knows HTTP/2 and gRPC framing, nothing of KServe;
// the service knows KServe, nothing of sockets.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "services/model_server/native/errors.h"
#include "services/model_server/native/peers.h"
#include "services/model_server/native/wire.h"

namespace s3ml::dataplane {

using Clock = std::chrono::system_clock;

struct Call {
  std::string method;   // the full path, e.g. "/inference.GRPCInferenceService/ModelInfer"
  MessageBytes message;  // the request message, serialized (without gRPC's 5-byte prefix)
  Clock::time_point deadline = Clock::time_point::max();  // from grpc-timeout; max() when none
  std::string traceparent;                                // the caller's W3C trace context, or ""
  std::shared_ptr<const PeerCert> peer;                   // the connection's verified certificate
};

struct Reply {
  Code code = Code::kOk;
  std::string message;  // grpc-message when code is not OK
  std::string body;     // the response message, serialized, when code is OK
};

// Sends the reply of one call. Call it exactly once, from any thread; a reply to
// a call whose client has gone (cancelled, disconnected) is dropped.
using Responder = std::function<void(Reply)>;

class Handler {
 public:
  virtual ~Handler() = default;
  // Called on one of the server's threads, which may run the call to its end
  // (inference included) while the others keep serving connections; or may
  // hand it on and `respond` later from wherever it finishes.
  virtual void Serve(Call call, Responder respond) = 0;
};

}  // namespace s3ml::dataplane
