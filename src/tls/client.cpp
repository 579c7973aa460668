#include "meridian/tls/client.hpp"

#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <utility>

#include "meridian/common/log.hpp"
#include "tls/openssl.hpp"

namespace meridian::tls {

using namespace detail;

namespace {
std::atomic<std::uint64_t> next_serial{1};

constexpr unsigned char alpn_http11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
constexpr unsigned char alpn_h2[] = {2, 'h', '2'};

// A session the server sent (after the handshake in TLS 1.3, during it in 1.2): the endpoint's
// peer keeps a copy for the next connection. A copy, because OpenSSL marks a connection's own
// session not resumable when the connection ends without a close_notify (a reset, a backend
// that closes idle connections), which must not spoil it for the others.
int on_new_session(SSL* ssl, SSL_SESSION* s) {
  auto* p = static_cast<peer*>(SSL_get_ex_data(ssl, client_peer_index()));
  auto* ctx = static_cast<const client_context*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  if (!p || !ctx) return 0;
  if (SSL_SESSION* copy = SSL_SESSION_dup(s)) p->keep(ctx->serial(), copy);
  return 0;  // the connection's own reference stays OpenSSL's
}
}  // namespace

int detail::client_peer_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

client_context::client_context(const std::string& cluster, const config::upstream_tls_config& cfg)
    : cfg_(cfg), serial_(next_serial.fetch_add(1)) {
  auto fail = [&](const std::string& what) {
    if (ctx_) SSL_CTX_free(ctx_);
    ctx_ = nullptr;
    return std::runtime_error(common::cat("cluster '", cluster, "' tls: ", what));
  };
  ctx_ = SSL_CTX_new(TLS_client_method());
  if (!ctx_) throw fail(openssl_reason());
  SSL_CTX_set_app_data(ctx_, this);
  SSL_CTX_set_min_proto_version(ctx_, cfg.min_version == 13 ? TLS1_3_VERSION : TLS1_2_VERSION);
  SSL_CTX_set_options(ctx_, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_ENABLE_KTLS);
  SSL_CTX_set_mode(ctx_, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (SSL_CTX_set_cipher_list(ctx_, tls12_ciphers) != 1 ||
      SSL_CTX_set1_groups_list(ctx_, groups) != 1)
    throw fail(openssl_reason());
  // The upstream side speaks HTTP/1.1 (gRPC clusters: h2); saying so keeps a server that offers
  // both from guessing.
  if (cfg.h2)
    SSL_CTX_set_alpn_protos(ctx_, alpn_h2, sizeof alpn_h2);
  else
    SSL_CTX_set_alpn_protos(ctx_, alpn_http11, sizeof alpn_http11);
  // Sessions are kept per endpoint (tls::peer), not in OpenSSL's cache.
  SSL_CTX_set_session_cache_mode(ctx_, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(ctx_, on_new_session);
  if (cfg.verify) {
    int ok = cfg.ca.empty() ? SSL_CTX_set_default_verify_paths(ctx_)
                            : SSL_CTX_load_verify_locations(ctx_, cfg.ca.c_str(), nullptr);
    if (ok != 1)
      throw fail(
          common::cat("ca '", cfg.ca.empty() ? "(system store)" : cfg.ca, "': ", openssl_reason()));
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
    SSL_CTX_set_verify_depth(ctx_, 8);
    X509_VERIFY_PARAM_set_hostflags(SSL_CTX_get0_param(ctx_), X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  } else {
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_NONE, nullptr);
    common::log(common::log_level::warn, "tls", "cluster '", cluster,
                "': verify is false, so its endpoints' certificates are not checked");
  }
  if (!cfg.cert.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx_, cfg.cert.c_str()) != 1)
      throw fail(common::cat("cert '", cfg.cert, "': ", openssl_reason()));
    if (SSL_CTX_use_PrivateKey_file(ctx_, cfg.key.c_str(), SSL_FILETYPE_PEM) != 1)
      throw fail(common::cat("key '", cfg.key, "': ", openssl_reason()));
    if (SSL_CTX_check_private_key(ctx_) != 1)
      throw fail(common::cat("key '", cfg.key, "' does not match cert '", cfg.cert,
                             "': ", openssl_reason()));
  }
}

client_context::~client_context() {
  if (ctx_) SSL_CTX_free(ctx_);
}

// ---- peer --------------------------------------------------------------------------------------

peer::~peer() {
  if (session_) SSL_SESSION_free(session_);
}

SSL_SESSION* peer::session_for(const client_context& ctx) const {
  std::lock_guard lock(m_);
  if (!session_ || serial_ != ctx.serial() || !SSL_SESSION_is_resumable(session_)) return nullptr;
  SSL_SESSION_up_ref(session_);
  return session_;
}

void peer::keep(std::uint64_t serial, SSL_SESSION* s) {
  SSL_SESSION* old = nullptr;
  {
    std::lock_guard lock(m_);
    old = std::exchange(session_, s);
    serial_ = serial;
  }
  if (old) SSL_SESSION_free(old);
}

void peer::forget() {
  keep(0, nullptr);
}

void peer::handshake_done(bool resumed) {
  std::lock_guard lock(m_);
  ++(resumed ? counts_.resumed : counts_.full);
}

void peer::handshake_failed(failure why, std::string detail) {
  {
    std::lock_guard lock(m_);
    ++counts_.failed[static_cast<std::size_t>(why)];
    counts_.last_error = common::cat(to_string(why), ": ", detail);
    counts_.last_error_at =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  }
  forget();  // the next connection starts afresh
}

peer::view peer::read() const {
  std::lock_guard lock(m_);
  return counts_;
}

}  // namespace meridian::tls
