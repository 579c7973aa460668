// TLS to the backends, end to end: a gateway whose cluster speaks TLS to an origin that
// terminates it (a second gateway with a TLS listener, in front of a plain test backend), with
// certificates the test makes. Verification on by default, by name and CA; a failure is a connect
// failure that says why and never falls back to plain; sessions resume; mutual TLS; probes over
// TLS with the handshake timed apart from the TCP connect.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "meridian/runtime/io_backend.hpp"
#include "support/gateway_process.hpp"
#include "support/raw_client.hpp"
#include "support/test_backend.hpp"
#include "support/tls_client.hpp"

using namespace test;
using namespace std::chrono_literals;

namespace {
// The origin: a TLS listener serving api.test (the first certificate, also served for names it
// does not have), `extra` added to its tls block, in front of `backend`.
std::string origin_config(const pki& p, std::uint16_t backend, const std::string& extra = "") {
  return "listeners:\n"
         "  - name: public\n"
         "    address: 127.0.0.1:0\n"
         "    tls:\n"
         "      certificates:\n"
         "        - { cert: " + p.path("api.crt") + ", key: " + p.path("api.key") + " }\n" +
         extra +
         "workers: 1\n"
         "clusters: [ { name: c, balancer: round_robin, endpoints: [ 127.0.0.1:" +
         std::to_string(backend) + " ] } ]\n"
         "routes: [ { name: all, match: { path_prefix: / }, cluster: c } ]\n";
}

// The gateway under test: plain listener, one cluster `remote` at `endpoint` with `tls` as its
// tls block (flow style) and `pool`, names from `hosts` (a hosts file; may be empty).
std::string edge_config(const std::string& endpoint, const std::string& tls,
                        const std::string& hosts = "", const std::string& pool = "") {
  return "listeners: [ { name: public, address: 127.0.0.1:0 } ]\n"
         "workers: 1\n" +
         (hosts.empty() ? std::string() : "dns: { hosts_file: " + hosts + " }\n") +
         "clusters:\n"
         "  - name: remote\n"
         "    balancer: round_robin\n"
         "    endpoints: [ " + endpoint + " ]\n"
         "    tls: " + tls + "\n" +
         (pool.empty() ? std::string() : "    pool: " + pool + "\n") +
         "    probe: { path: /health, interval: 500ms, timeout: 500ms }\n"
         "routes: [ { name: all, match: { path_prefix: / }, cluster: remote } ]\n";
}

double metric(const std::string& text, const std::string& series) {
  auto at = text.find(series + " ");
  return at == std::string::npos ? -1 : std::atof(text.c_str() + at + series.size() + 1);
}

std::string hosts_file(const pki& p) {
  auto path = p.path("hosts");
  std::ofstream(path) << "127.0.0.1 api.test other.test\n";
  return path;
}
}  // namespace

namespace {
void check_verified(const pki& p, const std::vector<std::string>& args) {
  test_backend be;
  gateway_process origin(origin_config(p, be.port()), args);
  auto hosts = hosts_file(p);
  // The endpoint by name: SNI and verification use it. No idle pool: every request opens (and
  // resumes) a connection.
  gateway_process gw(edge_config("api.test:" + std::to_string(origin.port()),
                                 "{ ca: " + p.path("ca.crt") + " }", hosts,
                                 "{ max_idle_per_endpoint: 0 }"),
                     args);
  for (int i = 0; i < 4; ++i) {
    auto r = get(gw.port(), "/echo");
    REQUIRE(r);
    CHECK(r->status == 200);
  }
  // The origin saw TLS (it tells its backend so) for the name the gateway connected by.
  auto seen = be.requests();
  REQUIRE(seen.size() >= 4);
  CHECK(has(seen.back().head, "x-forwarded-proto: https"));

  auto m = metrics_text(gw);
  CHECK(metric(m, R"(meridian_upstream_tls_handshakes_total{cluster="remote",resumed="false"})") >= 1);
  CHECK(metric(m, R"(meridian_upstream_tls_handshakes_total{cluster="remote",resumed="true"})") >= 3);
  CHECK(has(m, "meridian_upstream_tls_handshake_duration_seconds_count{cluster=\"remote\"}"));
  // The origin agrees that sessions were resumed.
  auto om = metrics_text(origin);
  CHECK(metric(om, R"(meridian_tls_handshakes_total{listener="public",version="TLSv1.3",resumed="true"})") >= 3);

  // Probes go over the same TLS: the TCP connect and the handshake are separate figures.
  CHECK(test_backend::eventually(
      [&] {
        auto t = metrics_text(gw);
        return metric(t, "meridian_endpoint_tls_handshake_seconds{cluster=\"remote\",endpoint=\"127.0.0.1:" +
                             std::to_string(origin.port()) + "\"}") > 0 &&
               metric(t, "meridian_endpoint_connect_seconds{cluster=\"remote\",endpoint=\"127.0.0.1:" +
                             std::to_string(origin.port()) + "\"}") > 0;
      },
      5000ms));
  // The probes name the endpoint as it is reached (SNI and Host alike).
  auto probe_seen = [&] {
    for (const auto& q : be.requests())
      if (has(q.head, "GET /health ") &&
          has(q.head, "host: api.test:" + std::to_string(origin.port())))
        return true;
    return false;
  };
  CHECK(test_backend::eventually(probe_seen, 5000ms));
  auto eps = get(gw.admin_port(), "/admin/endpoints");
  REQUIRE(eps);
  CHECK(has(eps->body, "\"tls\":{\"name\":\"api.test\",\"verify\":true"));
  CHECK(has(eps->body, "\"last_error\":\"\""));
  CHECK(has(eps->body, "\"healthy\":true"));
}
}  // namespace

TEST_CASE("upstream TLS: verified by the endpoint's name, sessions resumed, probes time the handshake apart") {
  pki p;
  SUBCASE("epoll") { check_verified(p, {"--io-backend", "epoll"}); }
#ifdef MERIDIAN_EXPECT_IO_URING
  SUBCASE("io_uring, where the kernel allows it") {
    if (meridian::runtime::probe_io_uring() != 0) {
      MESSAGE("io_uring not permitted here; skipped");
      return;
    }
    check_verified(p, {"--io-backend", "io_uring"});
  }
#endif
}

TEST_CASE("upstream TLS: a certificate that does not verify is a connect failure that says why, never plain") {
  pki p;
  test_backend be;
  gateway_process origin(origin_config(p, be.port()));
  auto hosts = hosts_file(p);
  auto endpoint = "other.test:" + std::to_string(origin.port());
  auto label = "127.0.0.1:" + std::to_string(origin.port());

  SUBCASE("the name is not the certificate's") {
    gateway_process gw(edge_config(endpoint, "{ ca: " + p.path("ca.crt") + " }", hosts));
    auto r = get(gw.port(), "/echo");
    REQUIRE(r);
    CHECK(r->status == 502);
    CHECK(has(r->body, "TLS handshake"));
    CHECK(test_backend::eventually(
        [&] { return has(gw.log(), "certificate verify failed: hostname mismatch"); }, 2000ms));
    auto eps = get(gw.admin_port(), "/admin/endpoints");
    REQUIRE(eps);
    CHECK(has(eps->body, "\"last_error\":\"bad_certificate: certificate verify failed: hostname mismatch\""));
    auto m = metrics_text(gw);
    CHECK(metric(m, "meridian_upstream_tls_errors_total{cluster=\"remote\",endpoint=\"" + label +
                        "\",reason=\"bad_certificate\"}") >= 1);
    CHECK(metric(m, "meridian_upstream_errors_total{cluster=\"remote\",endpoint=\"" + label +
                        "\",kind=\"connect\"}") >= 1);
    for (const auto& q : be.requests()) CHECK_FALSE(has(q.head, "GET /echo"));
    // The probes fail the same way, and the endpoint is found unhealthy.
    CHECK(test_backend::eventually(
        [&] {
          auto e = get(gw.admin_port(), "/admin/endpoints");
          return e && has(e->body, "\"healthy\":false") && has(e->body, "TLS handshake failed");
        },
        6000ms));
  }
  SUBCASE("the same name verifies when sni says so") {
    gateway_process gw(
        edge_config(endpoint, "{ ca: " + p.path("ca.crt") + ", sni: api.test }", hosts));
    auto r = get(gw.port(), "/echo");
    REQUIRE(r);
    CHECK(r->status == 200);
  }
  SUBCASE("a CA that did not sign it") {
    gateway_process gw(edge_config(endpoint, "{ ca: " + p.path("stranger.crt") + ", sni: api.test }", hosts));
    auto r = get(gw.port(), "/echo");
    REQUIRE(r);
    CHECK(r->status == 502);
    CHECK(test_backend::eventually(
        [&] { return has(gw.log(), "certificate verify failed: unable to get local issuer certificate"); },
        2000ms));
    // Nothing reached the backend behind the origin from a gateway that did not verify it.
    for (const auto& q : be.requests()) CHECK_FALSE(has(q.head, "GET /echo"));
  }
  SUBCASE("verify: false, said explicitly, connects to anything") {
    gateway_process gw(edge_config(endpoint, "{ verify: false }", hosts));
    auto r = get(gw.port(), "/echo");
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(has(gw.log(), "verify is false"));
  }
  SUBCASE("a plain HTTP backend is not spoken to in plain") {
    gateway_process gw(edge_config("127.0.0.1:" + std::to_string(be.port()),
                                   "{ ca: " + p.path("ca.crt") + ", sni: api.test }"));
    auto r = get(gw.port(), "/echo");
    REQUIRE(r);
    CHECK(r->status >= 502);  // 503 once the probes have found it unhealthy
    for (const auto& q : be.requests()) CHECK_FALSE(has(q.head, "GET /echo"));
  }
}

TEST_CASE("upstream TLS: a server that never answers the handshake costs the connect deadline, no more") {
  pki p;
  // A listener that completes TCP (the kernel's backlog) and never reads: the ClientHello sits.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::listen(fd, 16) == 0);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  auto yaml = edge_config("127.0.0.1:" + std::to_string(ntohs(a.sin_port)),
                          "{ ca: " + p.path("ca.crt") + ", sni: api.test }");
  yaml.replace(yaml.find("    probe:"), 0, "    timeouts: { connect: 300ms }\n    retries: { attempts: 1 }\n");
  gateway_process gw(yaml);
  auto start = std::chrono::steady_clock::now();
  auto r = get(gw.port(), "/echo");
  auto took = std::chrono::steady_clock::now() - start;
  REQUIRE(r);
  CHECK(r->status == 504);
  CHECK(took < 2s);
  CHECK(test_backend::eventually([&] { return has(gw.log(), "timed out"); }, 2000ms));
  ::close(fd);
}

TEST_CASE("upstream TLS: mutual TLS with the gateway's client certificate") {
  pki p;
  test_backend be;
  gateway_process origin(
      origin_config(p, be.port(), "      client_ca: " + p.path("ca.crt") + "\n"));
  auto endpoint = "127.0.0.1:" + std::to_string(origin.port());
  {
    gateway_process gw(edge_config(endpoint, "{ ca: " + p.path("ca.crt") + ", sni: api.test, cert: " +
                                                 p.path("client.crt") + ", key: " +
                                                 p.path("client.key") + " }"));
    auto r = get(gw.port(), "/echo");
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(test_backend::eventually(
        [&] { return has(origin.access_log(), "\"tls_client\":\"CN=client-a\""); }, 2000ms));
  }
  {
    // Without the certificate the origin refuses the connection (TLS 1.3: after the handshake,
    // at the first read): a connect failure that says why.
    gateway_process gw(edge_config(endpoint, "{ ca: " + p.path("ca.crt") + ", sni: api.test }"));
    auto r = get(gw.port(), "/echo");
    REQUIRE(r);
    CHECK(r->status >= 502);
    CHECK(test_backend::eventually(
        [&] { return has(gw.log(), "TLS connection refused (tlsv13 alert certificate required)"); },
        2000ms));
    auto eps = get(gw.admin_port(), "/admin/endpoints");
    REQUIRE(eps);
    CHECK(has(eps->body, "\"last_error\":\"alert: tlsv13 alert certificate required\""));
  }
}

TEST_CASE("upstream TLS config: ca with verify false, a client key without its certificate, bad files are refused") {
  pki p;
  auto check = [&](const std::string& tls) {
    auto path = p.path("edge.yaml");
    std::ofstream(path) << edge_config("127.0.0.1:9", tls);
    std::string cmd = std::string(MERIDIAN_BIN_DIR) + "/meridian --check --config " + path + " 2>&1";
    std::string out;
    FILE* f = popen(cmd.c_str(), "r");
    char buf[512];
    while (f && fgets(buf, sizeof buf, f)) out += buf;
    int rc = f ? pclose(f) : -1;
    return std::pair{rc, out};
  };
  auto [rc, out] = check("{ verify: false, ca: " + p.path("ca.crt") + " }");
  CHECK(rc != 0);
  CHECK(has(out, "clusters[0].tls.ca"));
  std::tie(rc, out) = check("{ key: " + p.path("client.key") + " }");
  CHECK(rc != 0);
  CHECK(has(out, "clusters[0].tls.cert"));
  std::tie(rc, out) = check("{ ca: " + p.path("client.key") + " }");  // not a certificate
  CHECK(rc != 0);
  CHECK(has(out, "cluster 'remote' tls: ca"));
  std::tie(rc, out) = check("{ cert: " + p.path("client.crt") + ", key: " + p.path("api.key") + " }");
  CHECK(rc != 0);
  CHECK(has(out, "key values mismatch"));
  std::tie(rc, out) = check("{ ca: " + p.path("ca.crt") + ", sni: api.test, min_version: \"1.3\" }");
  CHECK(rc == 0);
}
