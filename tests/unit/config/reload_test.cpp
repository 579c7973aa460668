// What a reload may change (config::restart_needed).
#include <doctest/doctest.h>

#include <string>

#include "meridian/config/config.hpp"

using namespace meridian::config;

namespace {
const std::string base = R"(listeners: [ { name: public, address: 127.0.0.1:0 } ]
clusters:
  - name: llama
    kind: inference
    endpoints: [ 127.0.0.1:9201, 127.0.0.1:9202 ]
routes:
  - { name: chat, match: { path_prefix: /v1/ }, cluster: llama }
)";

std::string why(const std::vector<std::string>& sets) {
  auto a = load_string(base, "a.yaml");
  auto b = load_string(base, "b.yaml", sets);
  return restart_needed(*a, *b);
}
}  // namespace

TEST_CASE("a reload may change how requests are routed, timed and admitted") {
  CHECK(why({}).empty());
  CHECK(why({"clusters[0].balancer=least_request", "clusters[0].latency.decay=2s",
             "clusters[0].timeouts.first_byte=5s", "clusters[0].retries.attempts=1",
             "clusters[0].limits.max_inflight=10", "clusters[0].outlier.consecutive_5xx=9",
             "clusters[0].pool.idle_timeout=5s", "clusters[0].endpoints[1]=127.0.0.1:9203",
             "routes[0].match.path_prefix=/v2/", "routes[0].priority=critical",
             "limits.max_body_bytes=1MiB", "timeouts.idle=5s"})
            .empty());
}

TEST_CASE("sockets, threads and the shape of clusters and routes need a restart") {
  CHECK(why({"listeners[0].address=127.0.0.1:8080"}) == "listeners changed");
  CHECK(why({"admin.address=127.0.0.1:9999"}) == "admin changed");
  CHECK(why({"workers=3"}) == "workers changed");
  CHECK(why({"io_backend=epoll"}) == "io_backend changed");
  CHECK(why({"zone=edge"}) == "zone changed");
  CHECK(why({"drain.timeout=5s"}) == "drain changed");
  CHECK(why({"access_log=false"}) == "access_log changed");
  CHECK(why({"clusters[0].name=other", "routes[0].cluster=other"}) == "clusters[0].name changed");
  CHECK(why({"dns.refresh=1s"}) == "dns changed");
  CHECK(why({"clusters[0].probe.interval=2s"}) == "clusters[0].probe changed");
  CHECK(why({"clusters[0].models.interval=20s"}) == "clusters[0].models changed");
  CHECK(why({"routes[0].name=completions"}) == "routes[0].name changed");
}

TEST_CASE("a TLS listener's certificates and settings reload; turning TLS on or off needs a restart") {
  const std::string f = MERIDIAN_SOURCE_DIR "/config/meridian.example.yaml";
  auto tls = [&](const std::string& extra) {
    return "listeners:\n  - name: public\n    address: 127.0.0.1:0\n    tls:\n"
           "      certificates: [ { cert: " + f + ", key: " + f + " } ]\n" + extra +
           base.substr(base.find("clusters:"));
  };
  auto a = load_string(tls(""), "a.yaml");
  auto b = load_string(tls("      min_version: \"1.3\"\n      handshake_timeout: 2s\n"), "b.yaml");
  CHECK(restart_needed(*a, *b).empty());
  auto plain = load_string(base, "c.yaml");
  CHECK(restart_needed(*plain, *a) == "listeners changed");
  CHECK(restart_needed(*a, *plain) == "listeners changed");
}
