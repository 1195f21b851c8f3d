// Who may call the inference API: ACS-issued client certificates (TLS verified
// them against the ACS CA already) of an allowed role, not revoked by the ACS.
//
// The same rule as the Python plane's PeerPolicyInterceptor: no certificate ->
// UNAUTHENTICATED, revoked -> UNAUTHENTICATED, wrong role -> PERMISSION_DENIED.
// A connection's certificate is read once, at the handshake; the policy (the
// CRL) is checked on every call, so a revocation applies to open connections.
#pragma once

#include <openssl/x509.h>

#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "s3ml/model_server/v1/dataplane.pb.h"

namespace s3ml::dataplane {

struct PeerCert {
  bool present = false;    // the client sent a certificate
  std::string role;        // the s3ml role URI (spiffe://s3ml/...), or "" when none
  std::string serial_hex;  // lowercase, no leading zeros; "" when unreadable
};

// The role URI and serial of a verified peer certificate (nullptr: none was sent).
PeerCert ReadPeer(X509* cert);

class PeerPolicy {
 public:
  explicit PeerPolicy(std::string what) : what_(std::move(what)) {}
  void Update(const s3ml::model_server::v1::PeerPolicy& policy);  // a refreshed CRL
  // Throws CallError unless a caller holding `cert` may proceed.
  void Check(const PeerCert& cert) const;

 private:
  struct Rules {
    std::vector<std::string> prefixes;
    std::set<std::string> revoked;
  };

  const std::string what_;
  mutable std::mutex mu_;
  std::shared_ptr<const Rules> rules_ = std::make_shared<Rules>();
};

}  // namespace s3ml::dataplane
