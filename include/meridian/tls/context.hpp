// A TLS listener's server side: the OpenSSL contexts built from its config (certificates picked
// by SNI, TLS 1.2/1.3 with forward-secret AEAD suites only, server preference, no compression,
// renegotiation or 0-RTT, ALPN, optional client verification, a session cache and tickets), and
// the slot that holds the context in force, swapped by a reload or a changed certificate file
// while connections already open keep theirs. Built on the main or the control thread; the slot
// is read by every worker.
#pragma once

#include <openssl/ssl.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "meridian/common/clock.hpp"
#include "meridian/config/config.hpp"

namespace meridian::tls {

// Session ticket keys held in memory only: a new key every `rotate_every`, the one before it
// still accepted (its tickets are renewed), so a ticket lives at most two periods. Shared by
// every worker and every context a listener builds, so tickets survive a certificate reload.
class ticket_keys;
// A new ring whose periods run on `clock` (tests: a manual clock).
std::shared_ptr<ticket_keys> make_ticket_keys(const common::clock& clock);

struct certificate_info {
  std::string file;
  std::string subject;             // the leaf's subject, RFC 2253
  std::vector<std::string> names;  // DNS names it serves (subjectAltName, else the CN)
  std::string key_type;            // "EC" or "RSA" (or what OpenSSL names it)
  std::int64_t not_after = 0;      // expiry, Unix seconds
};

class server_context {
 public:
  // Loads the certificates, keys and client CA the config names; throws std::runtime_error
  // naming the file and OpenSSL's reason. `keys` may be null (a fresh ring on the steady clock).
  server_context(const std::string& listener, const config::listener_tls_config& cfg,
                 std::shared_ptr<ticket_keys> keys);
  ~server_context();
  server_context(const server_context&) = delete;
  server_context& operator=(const server_context&) = delete;

  // The context a new connection starts with; the client's SNI name switches it to the
  // certificate that serves that name (the default certificate when none does: the one marked
  // `default`, else the first).
  SSL_CTX* native() const { return groups_[default_].ctx; }
  const std::vector<certificate_info>& certificates() const { return certs_; }
  common::duration handshake_timeout() const { return handshake_timeout_; }
  const std::shared_ptr<ticket_keys>& keys() const { return keys_; }
  // Whether the kernel may take over record encryption (SSL_OP_ENABLE_KTLS and a kernel with
  // the tls module); a connection says whether it did (stream::ktls_send()).
  static bool kernel_tls_available();

 private:
  struct group {
    SSL_CTX* ctx;
    std::vector<std::string> names;
  };
  static int on_server_name(SSL* ssl, int* alert, void* arg);
  SSL_CTX* for_name(std::string_view name) const;

  std::vector<group> groups_;
  std::size_t default_ = 0;  // the group of the default certificate
  std::vector<certificate_info> certs_;
  common::duration handshake_timeout_;
  std::shared_ptr<ticket_keys> keys_;
  std::vector<unsigned char> alpn_;  // wire format
};

// Handshake counts and failures of one listener, for meridian_tls_* (any thread).
struct listener_stats {
  // [TLS 1.2, TLS 1.3][full, resumed]
  std::atomic<std::uint64_t> handshakes[2][2] = {};
  std::atomic<std::uint64_t> failures[16] = {};  // by tls::failure
  std::atomic<std::uint64_t> ktls_connections{0};
};

// The context in force for a listener. Any thread.
class context_slot {
 public:
  context_slot(std::string listener, std::shared_ptr<const server_context> ctx)
      : listener_(std::move(listener)), ctx_(std::move(ctx)) {}
  const std::string& listener() const { return listener_; }
  std::shared_ptr<const server_context> current() const {
    std::lock_guard lock(m_);
    return ctx_;
  }
  void set(std::shared_ptr<const server_context> ctx) {
    std::lock_guard lock(m_);
    ctx_ = std::move(ctx);
  }
  listener_stats& stats() { return stats_; }
  const listener_stats& stats() const { return stats_; }

 private:
  std::string listener_;
  mutable std::mutex m_;
  std::shared_ptr<const server_context> ctx_;
  listener_stats stats_;
};

}  // namespace meridian::tls
