// A TLS listener's contexts without sockets: handshakes between an OpenSSL client and the
// server context over a BIO pair, session tickets across key rotation on a manual clock.
#include "meridian/tls/context.hpp"

#include <doctest/doctest.h>
#include <openssl/ssl.h>

#include "support/tls_client.hpp"

using namespace meridian;

namespace {
// One handshake in memory; the client's session (with the server's tickets) and whether it was
// a resumption.
struct outcome {
  bool ok = false;
  bool reused = false;
  std::string server_cn;
  SSL_SESSION* session = nullptr;
};

outcome handshake(SSL_CTX* server, SSL_CTX* client, const char* sni, SSL_SESSION* resume) {
  outcome o;
  SSL* s = SSL_new(server);
  SSL* c = SSL_new(client);
  BIO *bs = nullptr, *bc = nullptr;
  BIO_new_bio_pair(&bs, 0, &bc, 0);
  SSL_set_bio(s, bs, bs);
  SSL_set_bio(c, bc, bc);
  SSL_set_accept_state(s);
  SSL_set_connect_state(c);
  if (sni) SSL_set_tlsext_host_name(c, sni);
  if (resume) SSL_set_session(c, resume);
  bool cd = false, sd = false;
  for (int i = 0; i < 20 && !(cd && sd); ++i) {
    if (!cd) cd = SSL_do_handshake(c) == 1;
    if (!sd) sd = SSL_do_handshake(s) == 1;
  }
  if (cd && sd) {
    o.ok = true;
    // TLS 1.3 tickets follow the handshake: the client takes them with its next read.
    char buf[1];
    SSL_read(c, buf, sizeof buf);
    o.reused = SSL_session_reused(c) == 1;
    if (X509* peer = SSL_get0_peer_certificate(c)) {
      char cn[256] = {};
      X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof cn);
      o.server_cn = cn;
    }
    SSL_shutdown(c);
    o.session = SSL_get1_session(c);
  }
  SSL_free(c);
  SSL_free(s);
  return o;
}
}  // namespace

TEST_CASE("session tickets resume across one key rotation and not after two periods") {
  test::pki p;
  common::manual_clock clock;
  config::listener_tls_config cfg;
  cfg.certificates = {{p.path("api.crt"), p.path("api.key")}, {p.path("edge.crt"), p.path("edge.key")}};
  tls::server_context server("t", cfg, tls::make_ticket_keys(clock));
  SSL_CTX* client = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_session_cache_mode(client, SSL_SESS_CACHE_OFF);

  auto first = handshake(server.native(), client, "api.test", nullptr);
  REQUIRE(first.ok);
  CHECK_FALSE(first.reused);
  CHECK(first.server_cn == "api.test");
  REQUIRE(first.session);

  // SNI switches the certificate; the ticket keys are the listener's whichever it serves.
  auto edge = handshake(server.native(), client, "x.edge.test", nullptr);
  CHECK(edge.server_cn == "edge.test");
  SSL_SESSION_free(edge.session);

  auto again = handshake(server.native(), client, "api.test", first.session);
  CHECK(again.reused);
  // Each check below uses a ticket of its own.
  auto spare = handshake(server.native(), client, "api.test", nullptr);
  REQUIRE(again.session);
  REQUIRE(spare.session);

  // An hour on, the key has rotated: a ticket made before still resumes (and is renewed).
  clock.advance(std::chrono::minutes(61));
  auto after_rotation = handshake(server.native(), client, "api.test", again.session);
  CHECK(after_rotation.ok);
  CHECK(after_rotation.reused);
  // Two periods after its key was made, a ticket no longer resumes: a full handshake.
  clock.advance(std::chrono::minutes(61));
  auto expired = handshake(server.native(), client, "api.test", spare.session);
  CHECK(expired.ok);
  CHECK_FALSE(expired.reused);
  // The renewed ticket (made after the rotation) still resumes.
  REQUIRE(after_rotation.session);
  auto renewed = handshake(server.native(), client, "api.test", after_rotation.session);
  CHECK(renewed.reused);

  for (auto* s : {first.session, again.session, spare.session, after_rotation.session,
                  expired.session, renewed.session})
    SSL_SESSION_free(s);
  SSL_CTX_free(client);
}

TEST_CASE("a certificate or key that does not load is refused with the file and the reason") {
  test::pki p;
  config::listener_tls_config cfg;
  cfg.certificates = {{p.path("api.crt"), p.path("edge.key")}};  // a key of another certificate
  try {
    tls::server_context bad("t", cfg, nullptr);
    FAIL("a mismatched key was accepted");
  } catch (const std::runtime_error& e) {
    std::string what = e.what();
    CHECK(what.find("listener 't'") != std::string::npos);
    CHECK(what.find(p.path("api.crt")) != std::string::npos);
  }
  cfg.certificates = {{p.path("ca.srl"), p.path("api.key")}};  // not a certificate
  CHECK_THROWS_AS(tls::server_context("t", cfg, nullptr), std::runtime_error);
}
