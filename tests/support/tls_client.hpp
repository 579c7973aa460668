// TLS for the tests: certificates made with the OpenSSL command line in a temporary directory
// (a CA, server certificates for SNI names in ECDSA and RSA, a client certificate, a stranger's
// self-signed one), and a blocking TLS client (OpenSSL) that sends one HTTP/1.1 request and
// reports what the handshake negotiated. Loopback only; every call has a deadline.
#pragma once

#include <openssl/ssl.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace test {

struct pki {
  std::string dir;
  // Makes everything under a new directory in /tmp (removed by the destructor).
  pki();
  ~pki();
  pki(const pki&) = delete;
  pki& operator=(const pki&) = delete;
  std::string path(const std::string& name) const { return dir + "/" + name; }
  // A certificate `name`.crt / `name`.key signed by the CA, for `cn` and DNS names `sans`
  // ("api.test,localhost"), key "ec" (P-256) or "rsa", valid `days`.
  void issue(const std::string& name, const std::string& cn, const std::string& sans,
             const std::string& key = "ec", int days = 30) const;
};

struct tls_options {
  std::string sni;                 // empty: none sent
  std::vector<std::string> alpn;   // offered, e.g. {"http/1.1"}
  std::string ca;                  // verify the server against it (empty: no verification)
  std::string cert, key;           // client certificate
  int max_version = 0;             // TLS1_2_VERSION to cap, 0: any
  int min_version = 0;             // e.g. TLS1_1_VERSION with max TLS1_1_VERSION for old clients
  std::string ciphers;             // TLS 1.2 cipher list (e.g. RSA-only suites)
  bool no_ticket = false;          // TLS 1.2: session id resumption only
  SSL_SESSION* resume = nullptr;   // a session to resume (not owned)
  std::string path = "/";
  int timeout_ms = 5000;
};

struct tls_result {
  bool handshake_ok = false;
  std::string error;     // why the handshake or the request failed
  std::string version;   // "TLSv1.3"
  std::string alpn;
  std::string server_cn;       // the certificate the server sent
  std::string server_key_type; // "EC" or "RSA"
  bool reused = false;
  int status = 0;  // 0: no response
  std::string response;  // head and body as received
  SSL_SESSION* session = nullptr;  // owned by the caller (SSL_SESSION_free), may be null
};

// One connection: handshake, `GET path` with Connection: close, the whole response.
tls_result tls_get(std::uint16_t port, const tls_options& o);

}  // namespace test
