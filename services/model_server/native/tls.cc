#include "services/model_server/native/tls.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cstring>
#include <memory>
#include <stdexcept>

namespace s3ml::dataplane {
namespace {

// TLS 1.2 suites HTTP/2 allows (RFC 7540 9.2.2): ECDHE with an AEAD. TLS 1.3 suites are all AEAD.
constexpr char kTls12Ciphers[] =
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
constexpr unsigned char kH2[] = {2, 'h', '2'};

[[noreturn]] void Fail(const std::string& what) {
  char detail[256] = "";
  ERR_error_string_n(ERR_get_error(), detail, sizeof(detail));
  ERR_clear_error();
  throw std::runtime_error("TLS: " + what + (detail[0] ? std::string(" (") + detail + ")" : ""));
}

using Bio = std::unique_ptr<BIO, decltype(&BIO_free)>;
Bio MemBio(const std::string& pem) {
  return Bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
}

void UseChain(SSL_CTX* ctx, const std::string& chain_pem) {
  Bio bio = MemBio(chain_pem);
  X509* leaf = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr);
  if (leaf == nullptr || SSL_CTX_use_certificate(ctx, leaf) != 1) {
    X509_free(leaf);
    Fail("the service certificate does not load");
  }
  X509_free(leaf);
  while (X509* extra = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    if (SSL_CTX_add0_chain_cert(ctx, extra) != 1) {
      X509_free(extra);
      Fail("an intermediate certificate does not load");
    }
  }
  ERR_clear_error();  // the loop ends on "no start line"
}

void UseKey(SSL_CTX* ctx, std::string* key_pem) {
  Bio bio = MemBio(*key_pem);
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr);
  OPENSSL_cleanse(key_pem->data(), key_pem->size());
  const bool ok = key != nullptr && SSL_CTX_use_PrivateKey(ctx, key) == 1 && SSL_CTX_check_private_key(ctx) == 1;
  EVP_PKEY_free(key);
  if (!ok) Fail("the service key does not load or does not match its certificate");
}

void TrustClientsOf(SSL_CTX* ctx, const std::string& ca_pem) {
  Bio bio = MemBio(ca_pem);
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  int loaded = 0;
  while (X509* ca = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    const bool ok = X509_STORE_add_cert(store, ca) == 1 && SSL_CTX_add_client_CA(ctx, ca) == 1;
    X509_free(ca);
    if (!ok) Fail("the ACS CA certificate does not load");
    ++loaded;
  }
  ERR_clear_error();
  if (loaded == 0) throw std::runtime_error("TLS: no ACS CA certificate given");
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
}

int SelectH2(SSL*, const unsigned char** out, unsigned char* out_len, const unsigned char* in, unsigned int in_len,
             void*) {
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, out_len, kH2, sizeof(kH2), in, in_len) != OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_ALERT_FATAL;  // gRPC is HTTP/2 only
  }
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

}  // namespace

TlsServerContext::TlsServerContext(const std::string& chain_pem, std::string* key_pem, const std::string& ca_pem)
    : ctx_(SSL_CTX_new(TLS_server_method())) {
  if (ctx_ == nullptr) Fail("cannot create a context");
  try {
    SSL_CTX_set_min_proto_version(ctx_, TLS1_2_VERSION);
    if (SSL_CTX_set_cipher_list(ctx_, kTls12Ciphers) != 1) Fail("cipher list");
    SSL_CTX_set_options(ctx_, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                  SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_num_tickets(ctx_, 0);
    SSL_CTX_set_session_cache_mode(ctx_, SSL_SESS_CACHE_OFF);
    // Non-blocking writes may be partial and resumed from a moved buffer.
    SSL_CTX_set_mode(ctx_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_read_ahead(ctx_, 1);  // several records per read(2)
    SSL_CTX_set_default_read_buffer_len(ctx_, 64 * 1024);
    SSL_CTX_set_alpn_select_cb(ctx_, SelectH2, nullptr);
    UseChain(ctx_, chain_pem);
    UseKey(ctx_, key_pem);
    TrustClientsOf(ctx_, ca_pem);
  } catch (...) {
    SSL_CTX_free(ctx_);
    throw;
  }
}

TlsServerContext::~TlsServerContext() { SSL_CTX_free(ctx_); }

SSL* TlsServerContext::NewSession(int fd) const {
  SSL* ssl = SSL_new(ctx_);
  if (ssl == nullptr || SSL_set_fd(ssl, fd) != 1) {
    SSL_free(ssl);
    ERR_clear_error();
    return nullptr;
  }
  SSL_set_accept_state(ssl);
  return ssl;
}

bool NegotiatedH2(const SSL* ssl) {
  const unsigned char* proto = nullptr;
  unsigned int len = 0;
  SSL_get0_alpn_selected(ssl, &proto, &len);
  return len == 2 && std::memcmp(proto, "h2", 2) == 0;
}

}  // namespace s3ml::dataplane
