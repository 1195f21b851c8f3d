// The server side of mutual TLS with the service's attested identity: TLS 1.2+
// with AEAD ciphers only, ALPN "h2" (gRPC), and a client certificate that must
// chain to the ACS CA. No session tickets or cache: nothing outlives a
// connection, and no ticket key needs protecting.
#pragma once

#include <openssl/ssl.h>

#include <string>

namespace s3ml::dataplane {

class TlsServerContext {
 public:
  // `chain_pem`: the service's certificate, then any intermediates. The key is
  // zeroed in `key_pem` once loaded. Throws std::runtime_error naming what failed.
  TlsServerContext(const std::string& chain_pem, std::string* key_pem, const std::string& ca_pem);
  ~TlsServerContext();
  TlsServerContext(const TlsServerContext&) = delete;
  TlsServerContext& operator=(const TlsServerContext&) = delete;

  SSL* NewSession(int fd) const;  // a server-side session on a connected socket

 private:
  SSL_CTX* ctx_;
};

// True when the handshake on `ssl` negotiated HTTP/2.
bool NegotiatedH2(const SSL* ssl);

}  // namespace s3ml::dataplane
