// Who may call the inference API: ACS-issued client certificates (TLS verified
// them against the ACS CA already) of an allowed role, not revoked by the ACS.
//
// The same rule as the Python plane's PeerPolicyInterceptor: no certificate ->
// UNAUTHENTICATED, revoked -> UNAUTHENTICATED, wrong role -> PERMISSION_DENIED.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "s3ml/model_server/v1/dataplane.pb.h"

namespace s3ml::dataplane {

struct PeerCert {
  std::string role;        // the s3ml role URI (spiffe://s3ml/...), or "" when none
  std::string serial_hex;  // lowercase, no leading zeros
};

// Parses a PEM certificate's role URI and serial; nullopt-like empty serial on failure.
PeerCert ParsePeer(const std::string& pem);

class PeerPolicy {
 public:
  explicit PeerPolicy(std::string what) : what_(std::move(what)) {}
  void Update(const s3ml::model_server::v1::PeerPolicy& policy);  // a refreshed CRL
  // Throws CallError unless the call's peer may proceed.
  void Check(const grpc::ServerContext& context);

 private:
  struct Rules {
    std::vector<std::string> prefixes;
    std::set<std::string> revoked;
  };
  PeerCert Lookup(const std::string& pem);

  const std::string what_;
  std::mutex mu_;
  std::shared_ptr<const Rules> rules_ = std::make_shared<Rules>();
  std::unordered_map<std::string, PeerCert> parsed_;  // by PEM: peers reconnect, parse once
};

}  // namespace s3ml::dataplane
