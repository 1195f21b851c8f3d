#include "services/model_server/native/peers.h"

#include <openssl/bn.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cctype>

#include "services/model_server/native/errors.h"

namespace s3ml::dataplane {
namespace {

constexpr char kRolePrefix[] = "spiffe://s3ml/";

std::string SerialHex(X509* cert) {
  BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get_serialNumber(cert), nullptr);
  if (bn == nullptr) return "";
  char* hex = BN_bn2hex(bn);
  std::string out = hex ? hex : "";
  OPENSSL_free(hex);
  BN_free(bn);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  const size_t first = out.find_first_not_of('0');
  return first == std::string::npos ? "0" : out.substr(first);
}

std::string RoleUri(X509* cert) {
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (names == nullptr) return "";
  std::string role;
  for (int i = 0; i < sk_GENERAL_NAME_num(names) && role.empty(); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    if (name->type != GEN_URI) continue;
    const auto* uri = name->d.uniformResourceIdentifier;
    std::string value(reinterpret_cast<const char*>(ASN1_STRING_get0_data(uri)), ASN1_STRING_length(uri));
    if (value.rfind(kRolePrefix, 0) == 0) role = value;
  }
  GENERAL_NAMES_free(names);
  return role;
}

}  // namespace

PeerCert ReadPeer(X509* cert) {
  if (cert == nullptr) return {};
  return PeerCert{true, RoleUri(cert), SerialHex(cert)};
}

void PeerPolicy::Update(const s3ml::model_server::v1::PeerPolicy& policy) {
  auto rules = std::make_shared<Rules>();
  rules->prefixes.assign(policy.allowed_role_prefixes().begin(), policy.allowed_role_prefixes().end());
  rules->revoked.insert(policy.revoked_serials_hex().begin(), policy.revoked_serials_hex().end());
  std::lock_guard<std::mutex> lock(mu_);
  rules_ = std::move(rules);
}

void PeerPolicy::Check(const PeerCert& cert) const {
  if (!cert.present) throw CallError(Code::kUnauthenticated, what_ + ": no client certificate");
  std::shared_ptr<const Rules> rules;
  {
    std::lock_guard<std::mutex> lock(mu_);
    rules = rules_;
  }
  if (cert.serial_hex.empty()) {
    throw CallError(Code::kUnauthenticated, what_ + ": unreadable client certificate");
  }
  if (rules->revoked.count(cert.serial_hex)) {
    throw CallError(Code::kUnauthenticated, what_ + ": certificate revoked");
  }
  for (const auto& prefix : rules->prefixes) {
    if (!cert.role.empty() && cert.role.rfind(prefix, 0) == 0) return;
  }
  throw CallError(Code::kPermissionDenied,
                  what_ + ": " + (cert.role.empty() ? "no s3ml role" : cert.role) + " may not call this");
}

}  // namespace s3ml::dataplane
