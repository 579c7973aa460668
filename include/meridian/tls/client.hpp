// A cluster's TLS client side: the OpenSSL context its connections to the endpoints start from
// (the server's certificate verified against the configured CA and the name connected to,
// TLS 1.2/1.3 with forward-secret AEAD suites only, an optional client certificate), and each
// endpoint's shared state: the session the next connection resumes (the handshake is paid once
// per pooled connection, and then cheaply) and the last handshake failure, for /admin/endpoints.
// Contexts are built on the main or the control thread (start, reload) and used by every worker.
#pragma once

#include <openssl/ssl.h>

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "meridian/config/config.hpp"
#include "meridian/tls/stream.hpp"

namespace meridian::tls {

class client_context {
 public:
  // Loads the CA (or the system's store), the client certificate and key the config names;
  // throws std::runtime_error naming the cluster, the file and OpenSSL's reason.
  client_context(const std::string& cluster, const config::upstream_tls_config& cfg);
  ~client_context();
  client_context(const client_context&) = delete;
  client_context& operator=(const client_context&) = delete;

  SSL_CTX* native() const { return ctx_; }
  const config::upstream_tls_config& config() const { return cfg_; }
  // Which context a session came from: a session is resumed only by the context that made it
  // (a reload with another CA verifies again).
  std::uint64_t serial() const { return serial_; }

 private:
  SSL_CTX* ctx_ = nullptr;
  config::upstream_tls_config cfg_;
  std::uint64_t serial_;
};

// One endpoint's TLS state shared by every worker's connections to it. Any thread.
class peer {
 public:
  peer() = default;
  ~peer();
  peer(const peer&) = delete;
  peer& operator=(const peer&) = delete;

  // The session to resume with `ctx` (a new reference the caller frees), or null.
  SSL_SESSION* session_for(const client_context& ctx) const;
  // Keeps `s` (takes the reference) as the one to resume, made by the context `serial`.
  void keep(std::uint64_t serial, SSL_SESSION* s);
  // Forgets the session (its resumption failed, or the endpoint's certificate changed).
  void forget();

  void handshake_done(bool resumed);
  // A failed handshake: why, and what OpenSSL or the verifier said.
  void handshake_failed(failure why, std::string detail);

  struct view {
    std::uint64_t full = 0, resumed = 0;
    std::array<std::uint64_t, static_cast<std::size_t>(failure::count_)> failed{};  // by failure
    std::string last_error;  // the last failure, "reason: detail"; "" when none yet
    double last_error_at = 0;  // when, Unix seconds
  };
  view read() const;

 private:
  mutable std::mutex m_;
  SSL_SESSION* session_ = nullptr;
  std::uint64_t serial_ = 0;
  view counts_;
};

}  // namespace meridian::tls
