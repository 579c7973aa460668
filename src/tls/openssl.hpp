// What the TLS module's server and client contexts share: the suites and groups offered, OpenSSL's
// error text, and owners for OpenSSL's objects. Private to src/tls.
#pragma once

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <memory>
#include <stdexcept>
#include <string>

#include "meridian/common/log.hpp"

namespace meridian::tls::detail {

// TLS 1.2: ECDHE with AEAD ciphers only (forward secret, no CBC); TLS 1.3's suites are all so.
inline constexpr const char* tls12_ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
inline constexpr const char* groups = "X25519:P-256:P-384";

// OpenSSL's reason for the last failure, its queue cleared.
inline std::string openssl_reason() {
  unsigned long e = ERR_peek_last_error();
  ERR_clear_error();
  if (!e) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

struct bio_closer {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct x509_closer {
  void operator()(X509* x) const { X509_free(x); }
};
struct pkey_closer {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using bio_ptr = std::unique_ptr<BIO, bio_closer>;
using x509_ptr = std::unique_ptr<X509, x509_closer>;
using pkey_ptr = std::unique_ptr<EVP_PKEY, pkey_closer>;

inline bio_ptr open_file(const std::string& path, const char* what) {
  bio_ptr b(BIO_new_file(path.c_str(), "r"));
  if (!b)
    throw std::runtime_error(common::cat("cannot read ", what, " '", path, "': ", openssl_reason()));
  return b;
}

// The SSL ex_data slot of a client connection's tls::peer (where new sessions go).
int client_peer_index();

}  // namespace meridian::tls::detail
