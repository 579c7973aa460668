// TLS listeners, end to end: the real gateway with certificates the test makes, a backend over
// plain HTTP, and an OpenSSL client (tests/support/tls_client.hpp).
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "meridian/runtime/io_backend.hpp"
#include "support/gateway_process.hpp"
#include "support/raw_client.hpp"
#include "support/test_backend.hpp"
#include "support/tls_client.hpp"

using namespace test;
using namespace std::chrono_literals;

namespace {
// One TLS listener serving api.test (ECDSA and RSA) and *.edge.test, `extra` added to its
// tls block, in front of `backend`.
std::string tls_config(const pki& p, std::uint16_t backend, const std::string& extra = "",
                       const std::string& api = "") {
  std::string a = api.empty() ? p.path("api") : api;
  return "listeners:\n"
         "  - name: public\n"
         "    address: 127.0.0.1:0\n"
         "    tls:\n"
         "      certificates:\n"
         "        - { cert: " + a + ".crt, key: " + a + ".key }\n"
         "        - { cert: " + p.path("api-rsa") + ".crt, key: " + p.path("api-rsa") + ".key }\n"
         "        - { cert: " + p.path("edge") + ".crt, key: " + p.path("edge") + ".key }\n" +
         extra +
         "workers: 1\n"
         "clusters: [ { name: c, balancer: round_robin, endpoints: [ 127.0.0.1:" +
         std::to_string(backend) + " ] } ]\n"
         "routes: [ { name: all, match: { path_prefix: / }, cluster: c } ]\n";
}

tls_options verified(const pki& p, const std::string& sni) {
  tls_options o;
  o.sni = sni;
  o.ca = p.path("ca.crt");
  o.alpn = {"h2", "http/1.1"};
  o.path = "/echo";
  return o;
}

double metric(const std::string& text, const std::string& series) {
  auto at = text.find(series + " ");
  return at == std::string::npos ? -1 : std::atof(text.c_str() + at + series.size() + 1);
}
}  // namespace

namespace {
void check_listener(const pki& p, const std::vector<std::string>& args) {
  test_backend be;
  gateway_process gw(tls_config(p, be.port()), args);

  auto r = tls_get(gw.port(), verified(p, "api.test"));
  REQUIRE_MESSAGE(r.handshake_ok, r.error);
  CHECK(r.server_cn == "api.test");
  CHECK(r.server_key_type == "EC");
  CHECK(r.alpn == "http/1.1");  // h2 was offered first; this listener offers http/1.1 only
  CHECK(r.status == 200);
  CHECK(has(r.response, "x-forwarded-proto: https\r\n"));  // what the backend was told
  CHECK(r.version == "TLSv1.3");
  SSL_SESSION_free(r.session);

  // A wildcard name, a name no certificate has (the first certificate), no SNI at all.
  r = tls_get(gw.port(), verified(p, "x.edge.test"));
  CHECK(r.handshake_ok);
  CHECK(r.server_cn == "edge.test");
  SSL_SESSION_free(r.session);
  auto o = verified(p, "nobody.test");
  o.ca.clear();
  r = tls_get(gw.port(), o);
  CHECK(r.handshake_ok);
  CHECK(r.server_cn == "api.test");
  SSL_SESSION_free(r.session);
  o.sni.clear();
  r = tls_get(gw.port(), o);
  CHECK(r.handshake_ok);
  CHECK(r.server_cn == "api.test");
  SSL_SESSION_free(r.session);

  // A TLS 1.2 client that supports only RSA gets the RSA certificate for the same name.
  o = verified(p, "api.test");
  o.max_version = TLS1_2_VERSION;
  o.ciphers = "ECDHE-RSA-AES128-GCM-SHA256";
  r = tls_get(gw.port(), o);
  REQUIRE_MESSAGE(r.handshake_ok, r.error);
  CHECK(r.version == "TLSv1.2");
  CHECK(r.server_key_type == "RSA");
  CHECK(r.status == 200);
  SSL_SESSION_free(r.session);

  // TLS 1.1 is never offered; a CBC-only TLS 1.2 client finds no cipher.
  o = verified(p, "api.test");
  o.min_version = TLS1_1_VERSION;
  o.max_version = TLS1_1_VERSION;
  r = tls_get(gw.port(), o);
  CHECK_FALSE(r.handshake_ok);
  o = verified(p, "api.test");
  o.max_version = TLS1_2_VERSION;
  o.ciphers = "ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES128-SHA";
  r = tls_get(gw.port(), o);
  CHECK_FALSE(r.handshake_ok);

  // Plain HTTP to the TLS port: a 400 that says so, never a hang.
  auto plain = get(gw.port(), "/echo");
  REQUIRE(plain);
  CHECK(plain->status == 400);
  CHECK(has(plain->body, "this port speaks TLS"));
  CHECK(test_backend::eventually([&] { return has(gw.log(), "failed: plain_http"); }, 2000ms));

  // The access log names the TLS version; the metrics count handshakes and failures by reason.
  CHECK(test_backend::eventually([&] { return has(gw.access_log(), "\"tls\":\"TLSv1.3\""); }, 2000ms));
  auto m = metrics_text(gw);
  CHECK(metric(m, R"(meridian_tls_handshakes_total{listener="public",version="TLSv1.3",resumed="false"})") == 4);
  CHECK(metric(m, R"(meridian_tls_handshakes_total{listener="public",version="TLSv1.2",resumed="false"})") == 1);
  CHECK(metric(m, R"(meridian_tls_errors_total{listener="public",reason="protocol_version"})") == 1);
  CHECK(metric(m, R"(meridian_tls_errors_total{listener="public",reason="no_shared_cipher"})") == 1);
  CHECK(metric(m, R"(meridian_tls_errors_total{listener="public",reason="plain_http"})") == 1);
  CHECK(has(m, "meridian_tls_certificate_expiry_timestamp_seconds{listener=\"public\",file=\"" +
                   p.path("edge.crt") + "\",subject=\"CN=edge.test\",key_type=\"EC\"}"));
}
}  // namespace

TEST_CASE("TLS listener: SNI picks the certificate, ALPN says http/1.1, the request is proxied as https") {
  pki p;
  SUBCASE("epoll") { check_listener(p, {"--io-backend", "epoll"}); }
#ifdef MERIDIAN_EXPECT_IO_URING
  SUBCASE("io_uring, where the kernel allows it") {
    if (meridian::runtime::probe_io_uring() != 0) {
      MESSAGE("io_uring not permitted here; skipped");
      return;
    }
    check_listener(p, {"--io-backend", "io_uring"});
  }
#endif
}

TEST_CASE("TLS listener: a certificate marked default serves names no certificate has, and clients without SNI") {
  pki p;
  test_backend be;
  gateway_process gw("listeners:\n"
                     "  - name: public\n"
                     "    address: 127.0.0.1:0\n"
                     "    tls:\n"
                     "      certificates:\n"
                     "        - { cert: " + p.path("api.crt") + ", key: " + p.path("api.key") + " }\n"
                     "        - { cert: " + p.path("edge.crt") + ", key: " + p.path("edge.key") +
                     ", default: true }\n"
                     "workers: 1\n"
                     "clusters: [ { name: c, endpoints: [ 127.0.0.1:" + std::to_string(be.port()) +
                     " ] } ]\n"
                     "routes: [ { name: all, match: { path_prefix: / }, cluster: c } ]\n");
  for (auto [sni, cn] : {std::pair{"nobody.test", "edge.test"}, {"", "edge.test"},
                         {"api.test", "api.test"}, {"x.edge.test", "edge.test"}}) {
    CAPTURE(sni);
    tls_options o;
    o.sni = sni;
    o.path = "/echo";
    auto r = tls_get(gw.port(), o);
    REQUIRE_MESSAGE(r.handshake_ok, r.error);
    CHECK(r.server_cn == cn);
    CHECK(r.status == 200);
    SSL_SESSION_free(r.session);
  }
}

TEST_CASE("TLS sessions resume: 1.3 tickets (renewed on each resumption), 1.2 tickets, the 1.2 session cache; counted") {
  pki p;
  test_backend be;
  gateway_process gw(tls_config(p, be.port()));
  for (int version : {TLS1_3_VERSION, TLS1_2_VERSION}) {
    for (bool tickets : {true, false}) {
      if (version == TLS1_3_VERSION && !tickets) continue;
      CAPTURE(version);
      CAPTURE(tickets);
      auto o = verified(p, "api.test");
      o.max_version = version;
      o.no_ticket = !tickets;
      auto first = tls_get(gw.port(), o);
      REQUIRE_MESSAGE(first.handshake_ok, first.error);
      REQUIRE(first.session);
      CHECK_FALSE(first.reused);
      o.resume = first.session;
      auto second = tls_get(gw.port(), o);
      CHECK(second.handshake_ok);
      CHECK(second.reused);
      CHECK(second.status == 200);
      if (version == TLS1_3_VERSION) {
        // A TLS 1.3 client uses a ticket once: the resumed connection hands it a new one.
        REQUIRE(second.session);
        o.resume = second.session;
        auto third = tls_get(gw.port(), o);
        CHECK(third.reused);
        SSL_SESSION_free(third.session);
      }
      SSL_SESSION_free(first.session);
      SSL_SESSION_free(second.session);
    }
  }
  auto m = metrics_text(gw);
  CHECK(metric(m, R"(meridian_tls_handshakes_total{listener="public",version="TLSv1.3",resumed="true"})") == 2);
  CHECK(metric(m, R"(meridian_tls_handshakes_total{listener="public",version="TLSv1.2",resumed="true"})") == 2);
}

TEST_CASE("mutual TLS: a client certificate from client_ca is accepted and logged, others refused") {
  pki p;
  test_backend be;
  gateway_process gw(tls_config(p, be.port(), "      client_ca: " + p.path("ca.crt") + "\n"));
  auto o = verified(p, "api.test");
  o.cert = p.path("client.crt");
  o.key = p.path("client.key");
  auto r = tls_get(gw.port(), o);
  REQUIRE_MESSAGE(r.handshake_ok, r.error);
  CHECK(r.status == 200);
  SSL_SESSION_free(r.session);
  CHECK(test_backend::eventually(
      [&] { return has(gw.access_log(), "\"tls_client\":\"CN=client-a\""); }, 2000ms));

  // Without a certificate, or with one no trusted CA signed: no request gets through (TLS 1.3
  // clients learn it at their first read).
  o.cert.clear();
  o.key.clear();
  r = tls_get(gw.port(), o);
  CHECK(r.status == 0);
  SSL_SESSION_free(r.session);
  o.cert = p.path("stranger.crt");
  o.key = p.path("stranger.key");
  r = tls_get(gw.port(), o);
  CHECK(r.status == 0);
  SSL_SESSION_free(r.session);
  CHECK(be.requests().size() == 1);
  auto m = metrics_text(gw);
  CHECK(metric(m, R"(meridian_tls_errors_total{listener="public",reason="no_certificate"})") == 1);
  CHECK(metric(m, R"(meridian_tls_errors_total{listener="public",reason="bad_certificate"})") == 1);
}

TEST_CASE("certificate rotation under load: a swapped Secret symlink, a broken file, a reload") {
  pki p;
  test_backend be;
  namespace fs = std::filesystem;
  // The layout of a Kubernetes Secret mount: files behind a symlink to a dated directory.
  auto v1 = p.path("v1"), v2 = p.path("v2"), v3 = p.path("v3");
  fs::create_directory(v1);
  fs::copy_file(p.path("api.crt"), v1 + "/api.crt");
  fs::copy_file(p.path("api.key"), v1 + "/api.key");
  fs::create_directory_symlink(v1, p.path("live"));
  gateway_process gw(tls_config(p, be.port(), "", p.path("live/api")));

  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0};
  std::thread load([&] {
    while (!stop) {
      auto r = tls_get(gw.port(), verified(p, "api.test"));
      (r.status == 200 ? ok : failed)++;
      SSL_SESSION_free(r.session);
    }
  });
  auto served_cn = [&] {
    auto r = tls_get(gw.port(), verified(p, "api.test"));
    SSL_SESSION_free(r.session);
    return r.server_cn;
  };
  CHECK(served_cn() == "api.test");

  // Renewed: a new directory, the symlink swapped atomically. Served within seconds.
  p.issue("renewed", "api-renewed", "api.test,localhost");
  fs::create_directory(v2);
  fs::copy_file(p.path("renewed.crt"), v2 + "/api.crt");
  fs::copy_file(p.path("renewed.key"), v2 + "/api.key");
  fs::create_directory_symlink(v2, p.path("live.new"));
  fs::rename(p.path("live.new"), p.path("live"));
  CHECK(test_backend::eventually([&] { return served_cn() == "api-renewed"; }, 8000ms));

  // Broken: the old certificate stays, the log says why, a failed reload is counted.
  fs::create_directory(v3);
  std::ofstream(v3 + "/api.crt") << "not a certificate\n";
  fs::copy_file(p.path("renewed.key"), v3 + "/api.key");
  fs::create_directory_symlink(v3, p.path("live.new"));
  fs::rename(p.path("live.new"), p.path("live"));
  CHECK(test_backend::eventually([&] { return has(gw.log(), "do not load"); }, 8000ms));
  CHECK(served_cn() == "api-renewed");
  CHECK(metric(metrics_text(gw), R"(meridian_config_reloads_total{result="failure"})") == 1);

  // A reload (SIGHUP) with the config naming other files: new handshakes get them.
  gw.rewrite_config(tls_config(p, be.port(), "", p.path("api")));
  gw.signal(SIGHUP);
  CHECK(test_backend::eventually([&] { return served_cn() == "api.test"; }, 5000ms));

  stop = true;
  load.join();
  CHECK(ok > 0);
  CHECK(failed == 0);
}

TEST_CASE("TLS handshake deadline: a client that sends nothing is closed and counted") {
  pki p;
  test_backend be;
  gateway_process gw(tls_config(p, be.port(), "      handshake_timeout: 500ms\n"));
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(gw.port());
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  auto t0 = std::chrono::steady_clock::now();
  char c;
  auto n = ::recv(fd, &c, 1, 0);
  auto waited = std::chrono::steady_clock::now() - t0;
  ::close(fd);
  CHECK(n == 0);  // closed by the gateway, not by our 10 s timeout
  CHECK(waited < 5s);
  CHECK(test_backend::eventually(
      [&] {
        return metric(metrics_text(gw),
                      R"(meridian_tls_errors_total{listener="public",reason="timeout"})") == 1;
      },
      2000ms));
}

TEST_CASE("a TLS client that leaves while its request waits cancels the backend's work") {
  pki p;
  test_backend be;
  gateway_process gw(tls_config(p, be.port()));
  auto o = verified(p, "api.test");
  o.path = "/hang";   // the backend never answers
  o.timeout_ms = 300;  // the client gives up, says close_notify and closes
  auto t0 = std::chrono::steady_clock::now();
  auto r = tls_get(gw.port(), o);
  SSL_SESSION_free(r.session);
  CHECK(r.status == 0);
  CHECK(test_backend::eventually([&] { return be.aborted_streams.load() == 1; }, 3000ms));
  // Noticed by the client watch (armed on the 50 ms tick), not by a timeout of the request.
  CHECK(be.last_abort_at() - t0 < 2s);
}

TEST_CASE("the client certificate's subject routes requests and names the client for its cap") {
  pki p;
  p.issue("client-b", "client-b", "client-b");
  test_backend be;
  // All clients come from 127.0.0.1: only the certificate tells them apart.
  auto cfg = tls_config(p, be.port(), "      client_ca: " + p.path("ca.crt") + "\n");
  cfg.replace(cfg.find("routes:"), std::string::npos,
              "routes:\n"
              "  - { name: team-a, match: { client_subject: \"CN=client-a\" }, cluster: c }\n"
              "  - { name: team-b, match: { client_subject: \"CN=client-b\", path_prefix: /x }, "
              "cluster: c }\n");
  cfg.replace(cfg.find("clusters: [ { name: c,"), std::string("clusters: [ { name: c,").size(),
              "clusters: [ { name: c, limits: { client_key: tls_client }, pool: { "
              "max_connections_per_endpoint: 4 },");
  gateway_process gw(cfg);
  auto as = [&](const std::string& who, const std::string& path, int timeout_ms = 3000) {
    auto o = verified(p, "api.test");
    auto file = who == "client-a" ? std::string("client") : who;  // pki names client-a "client"
    o.cert = p.path(file + ".crt");
    o.key = p.path(file + ".key");
    o.path = path;
    o.timeout_ms = timeout_ms;
    auto r = tls_get(gw.port(), o);
    SSL_SESSION_free(r.session);
    return r;
  };
  // Routing: team-b's route takes /x only; team-a's takes everything of client-a's.
  auto first = as("client-a", "/anything");
  CHECK_MESSAGE(first.status == 200, first.error, first.response);
  CHECK(as("client-b", "/x").status == 200);
  CHECK(as("client-b", "/anything").status == 404);

  // The cap (client_cap 0.5 of 4 connections): client-a holds two hanging requests; its third
  // is refused at once, client-b (same address) is served.
  std::vector<std::thread> held;
  for (int i = 0; i < 2; ++i) held.emplace_back([&] { as("client-a", "/hang", 2500); });
  bool hanging_two = test_backend::eventually(
      [&] {
        int hanging = 0;
        for (const auto& rq : be.requests()) hanging += rq.head.rfind("GET /hang", 0) == 0;
        return hanging == 2;
      },
      2000ms);
  CHECK(hanging_two);
  if (hanging_two) {
    auto third = as("client-a", "/x");
    CHECK(third.status == 429);
    CHECK(has(third.response, "limits.client_cap"));
    CHECK(as("client-b", "/x").status == 200);
  }
  for (auto& t : held) t.join();
}
