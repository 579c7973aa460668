#include "meridian/tls/context.hpp"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <cstring>
#include <stdexcept>

#include "meridian/common/log.hpp"
#include "tls/openssl.hpp"

namespace meridian::tls {

using namespace detail;

namespace {
constexpr auto ticket_period = std::chrono::hours(1);

std::string subject_of(X509* x) {
  bio_ptr bio(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(bio.get(), X509_get_subject_name(x), 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(len > 0 ? len : 0));
}

std::vector<std::string> names_of(X509* x) {
  std::vector<std::string> out;
  auto* sans = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(x, NID_subject_alt_name, nullptr, nullptr));
  if (sans) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      const GENERAL_NAME* g = sk_GENERAL_NAME_value(sans, i);
      if (g->type != GEN_DNS) continue;
      const auto* s = g->d.dNSName;
      out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                       static_cast<std::size_t>(ASN1_STRING_length(s)));
    }
    GENERAL_NAMES_free(sans);
  }
  if (out.empty()) {
    char cn[256];
    if (X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof cn) > 0)
      out.emplace_back(cn);
  }
  for (auto& n : out)
    for (auto& c : n) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::int64_t not_after_of(X509* x) {
  struct tm t {};
  if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &t) != 1) return 0;
  return static_cast<std::int64_t>(timegm(&t));
}

bool name_matches(std::string_view pattern, std::string_view host) {
  if (pattern == host) return true;
  // "*.example.com" serves one label in front of example.com.
  if (pattern.size() > 2 && pattern.substr(0, 2) == "*.") {
    auto dot = host.find('.');
    return dot != std::string_view::npos && dot > 0 && host.substr(dot) == pattern.substr(1);
  }
  return false;
}

int select_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                unsigned inlen, void* arg) {
  const auto* ours = static_cast<const std::vector<unsigned char>*>(arg);
  unsigned char* chosen = nullptr;
  if (SSL_select_next_proto(&chosen, outlen, ours->data(), static_cast<unsigned>(ours->size()),
                            in, inlen) != OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_ALERT_FATAL;  // RFC 7301: no_application_protocol
  *out = chosen;
  return SSL_TLSEXT_ERR_OK;
}

int ticket_index();
}  // namespace

// ---- session ticket keys -----------------------------------------------------------------------

class ticket_keys {
 public:
  explicit ticket_keys(const common::clock& clock) : clock_(clock) {}

  struct key {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
    common::time_point made;
  };

  // The key to encrypt a new ticket with.
  key current() {
    std::lock_guard lock(m_);
    rotate_if_due(clock_.now());
    return keys_.front();
  }
  // The key named `name`: 1 the current one, 2 an older one still accepted (its ticket is
  // renewed), 0 none.
  int find(const unsigned char* name, key& out) {
    std::lock_guard lock(m_);
    auto now = clock_.now();
    rotate_if_due(now);
    for (std::size_t i = 0; i < keys_.size(); ++i) {
      if (std::memcmp(keys_[i].name, name, sizeof keys_[i].name) != 0) continue;
      if (now - keys_[i].made >= 2 * ticket_period) return 0;
      out = keys_[i];
      return i == 0 ? 1 : 2;
    }
    return 0;
  }

  static int callback(SSL* ssl, unsigned char* key_name, unsigned char* iv, EVP_CIPHER_CTX* cctx,
                      EVP_MAC_CTX* hctx, int enc) {
    auto* self = static_cast<std::shared_ptr<ticket_keys>*>(
        SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ticket_index()));
    if (!self || !*self) return 0;
    key k{};
    int result = 1;
    if (enc) {
      k = (*self)->current();
      std::memcpy(key_name, k.name, sizeof k.name);
      if (RAND_bytes(iv, EVP_MAX_IV_LENGTH) != 1) return -1;
      if (EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), nullptr, k.aes, iv) != 1) return -1;
    } else {
      result = (*self)->find(key_name, k);
      if (result == 0) return 0;  // unknown or expired: a full handshake
      // TLS 1.3 clients use a ticket once (RFC 8446 C.4) and OpenSSL sends a resumed
      // connection a new one only when told to renew: without it every other connection of
      // such a client would be a full handshake.
      if (SSL_version(ssl) == TLS1_3_VERSION) result = 2;
      if (EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), nullptr, k.aes, iv) != 1) return -1;
    }
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k.hmac, sizeof k.hmac),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, const_cast<char*>("SHA256"), 0),
        OSSL_PARAM_construct_end()};
    if (EVP_MAC_CTX_set_params(hctx, params) != 1) return -1;
    return result;
  }

 private:
  // A new key once the newest is a period old (on use: no timer); the one before stays.
  void rotate_if_due(common::time_point now) {
    if (!keys_.empty() && now - keys_.front().made < ticket_period) return;
    key k{};
    RAND_bytes(k.name, sizeof k.name);
    RAND_bytes(k.aes, sizeof k.aes);
    RAND_bytes(k.hmac, sizeof k.hmac);
    k.made = now;
    keys_.insert(keys_.begin(), k);
    if (keys_.size() > 2) keys_.pop_back();
  }

  const common::clock& clock_;
  std::mutex m_;
  std::vector<key> keys_;  // newest first
};

std::shared_ptr<ticket_keys> make_ticket_keys(const common::clock& clock) {
  return std::make_shared<ticket_keys>(clock);
}

namespace {
// Each SSL_CTX holds a reference to its listener's ticket keys (freed with the context, which
// connections still open keep alive).
void free_keys(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) {
  delete static_cast<std::shared_ptr<ticket_keys>*>(ptr);
}
int ticket_index() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, free_keys);
  return index;
}
}  // namespace

// ---- the contexts ------------------------------------------------------------------------------

server_context::server_context(const std::string& listener, const config::listener_tls_config& cfg,
                               std::shared_ptr<ticket_keys> keys)
    : handshake_timeout_(cfg.handshake_timeout),
      keys_(keys ? std::move(keys) : make_ticket_keys(common::steady())) {
  for (const auto& p : cfg.alpn) {
    alpn_.push_back(static_cast<unsigned char>(p.size()));
    alpn_.insert(alpn_.end(), p.begin(), p.end());
  }
  auto fail = [&](const std::string& what) -> std::runtime_error {
    return std::runtime_error(common::cat("listener '", listener, "': ", what));
  };
  auto make_ctx = [&]() {
    SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) throw fail(openssl_reason());
    groups_.push_back({ctx, {}});  // owned from here on, freed by the destructor on a throw
    SSL_CTX_set_min_proto_version(ctx, cfg.min_version == 13 ? TLS1_3_VERSION : TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_IGNORE_UNEXPECTED_EOF |
                                 SSL_OP_ENABLE_KTLS | SSL_OP_NO_TICKET * !cfg.session_tickets);
    SSL_CTX_set_max_early_data(ctx, 0);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (SSL_CTX_set_cipher_list(ctx, tls12_ciphers) != 1 || SSL_CTX_set1_groups_list(ctx, groups) != 1)
      throw fail(openssl_reason());
    SSL_CTX_set_session_id_context(ctx, reinterpret_cast<const unsigned char*>(listener.data()),
                                   static_cast<unsigned>(std::min<std::size_t>(listener.size(), 32)));
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_set_timeout(ctx, static_cast<long>(std::chrono::seconds(2 * ticket_period).count()));
    SSL_CTX_set_ex_data(ctx, ticket_index(), new std::shared_ptr<ticket_keys>(keys_));
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, &ticket_keys::callback);
    SSL_CTX_set_alpn_select_cb(ctx, select_alpn, &alpn_);
    SSL_CTX_set_tlsext_servername_callback(ctx, &server_context::on_server_name);
    SSL_CTX_set_tlsext_servername_arg(ctx, this);
    if (!cfg.client_ca.empty()) {
      if (SSL_CTX_load_verify_locations(ctx, cfg.client_ca.c_str(), nullptr) != 1)
        throw fail(common::cat("client_ca '", cfg.client_ca, "': ", openssl_reason()));
      STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(cfg.client_ca.c_str());
      if (names) SSL_CTX_set_client_CA_list(ctx, names);
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
      SSL_CTX_set_verify_depth(ctx, 5);
    }
    return ctx;
  };
  try {
    for (const auto& c : cfg.certificates) {
      auto cb = open_file(c.cert, "certificate");
      x509_ptr leaf(PEM_read_bio_X509(cb.get(), nullptr, nullptr, nullptr));
      if (!leaf) throw fail(common::cat("certificate '", c.cert, "': ", openssl_reason()));
      STACK_OF(X509)* chain = sk_X509_new_null();
      while (X509* x = PEM_read_bio_X509(cb.get(), nullptr, nullptr, nullptr)) sk_X509_push(chain, x);
      ERR_clear_error();  // the end of the file reads as an error
      auto kb = open_file(c.key, "key");
      pkey_ptr key(PEM_read_bio_PrivateKey(kb.get(), nullptr, nullptr, nullptr));
      if (!key) {
        sk_X509_pop_free(chain, X509_free);
        throw fail(common::cat("key '", c.key, "': ", openssl_reason()));
      }
      certificate_info info;
      info.file = c.cert;
      info.subject = subject_of(leaf.get());
      info.names = names_of(leaf.get());
      info.key_type = EVP_PKEY_get0_type_name(key.get()) ? EVP_PKEY_get0_type_name(key.get()) : "";
      info.not_after = not_after_of(leaf.get());
      // Certificates for the same names share a context (an ECDSA and an RSA one side by side:
      // OpenSSL picks per client); a certificate with other names gets its own.
      SSL_CTX* ctx = nullptr;
      for (std::size_t g = 0; g < groups_.size(); ++g)
        if (groups_[g].names == info.names) {
          ctx = groups_[g].ctx;
          if (c.is_default) default_ = g;
        }
      if (!ctx) {
        ctx = make_ctx();
        groups_.back().names = info.names;
        if (c.is_default) default_ = groups_.size() - 1;
      }
      int ok = SSL_CTX_use_cert_and_key(ctx, leaf.get(), key.get(), chain, 1);
      sk_X509_pop_free(chain, X509_free);
      if (ok != 1)
        throw fail(common::cat("certificate '", c.cert, "' with key '", c.key, "': ", openssl_reason()));
      certs_.push_back(std::move(info));
    }
  } catch (...) {
    for (auto& g : groups_) SSL_CTX_free(g.ctx);
    throw;
  }
}

server_context::~server_context() {
  for (auto& g : groups_) SSL_CTX_free(g.ctx);
}

SSL_CTX* server_context::for_name(std::string_view name) const {
  for (const auto& g : groups_)
    for (const auto& n : g.names)
      if (n == name) return g.ctx;
  for (const auto& g : groups_)
    for (const auto& n : g.names)
      if (name_matches(n, name)) return g.ctx;
  return nullptr;
}

int server_context::on_server_name(SSL* ssl, int*, void* arg) {
  const char* sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (!sni) return SSL_TLSEXT_ERR_OK;
  std::string host(sni);
  for (auto& c : host) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  auto* self = static_cast<const server_context*>(arg);
  SSL_CTX* ctx = self->for_name(host);
  if (ctx && ctx != SSL_get_SSL_CTX(ssl)) SSL_set_SSL_CTX(ssl, ctx);
  return SSL_TLSEXT_ERR_OK;  // no match: the default certificate
}

bool server_context::kernel_tls_available() {
  struct stat st {};
  return ::stat("/sys/module/tls", &st) == 0;
}

}  // namespace meridian::tls
