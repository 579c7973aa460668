#include "meridian/config/config.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <string>

#include "meridian/config/units.hpp"

using namespace meridian::config;

namespace {
const std::string base = R"(listeners:
  - { name: public, address: 127.0.0.1:0 }
clusters:
  - name: llama
    endpoints:
      - { address: 127.0.0.1:9201, zone: edge }
      - 127.0.0.1:9202
routes:
  - { match: { path_prefix: /v1/ }, cluster: llama }
)";

std::string error_of(const std::string& yaml, std::vector<std::string> overrides = {}) {
  try {
    load_string(yaml, "test.yaml", overrides);
  } catch (const config_error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST_CASE("units parse and reject garbage") {
  CHECK(parse_duration("250ms") == std::chrono::milliseconds(250));
  CHECK(parse_duration("2s") == std::chrono::seconds(2));
  CHECK(parse_duration("1m") == std::chrono::minutes(1));
  CHECK(parse_duration("1.5s") == std::chrono::milliseconds(1500));
  CHECK_FALSE(parse_duration("5").has_value());
  CHECK_FALSE(parse_duration("ms").has_value());
  CHECK_FALSE(parse_duration("5 parsecs").has_value());
  CHECK(parse_size("64KiB") == 65536u);
  CHECK(parse_size("8MiB") == 8u * 1024 * 1024);
  CHECK(parse_size("100") == 100u);
  CHECK_FALSE(parse_size("8XB").has_value());
  auto hp = parse_host_port("[::1]:80");
  REQUIRE(hp);
  CHECK(hp->host == "::1");
  CHECK(hp->port == 80);
  CHECK_FALSE(parse_host_port("127.0.0.1").has_value());
  CHECK_FALSE(parse_host_port("127.0.0.1:70000").has_value());
  CHECK_FALSE(parse_host_port("::1:80").has_value());
}

TEST_CASE("a minimal config loads with safe defaults") {
  auto cfg = load_string(base, "test.yaml");
  CHECK(cfg->listeners.size() == 1);
  CHECK(cfg->clusters[0].endpoints.size() == 2);
  CHECK(cfg->clusters[0].endpoints[0].zone == "edge");
  CHECK(cfg->limits.max_header_bytes == 64 * 1024);
  CHECK(cfg->limits.max_headers == 100);
  CHECK(cfg->limits.max_body_bytes == 32 * 1024 * 1024);
  CHECK(cfg->routes[0].cluster_index == 0);
  CHECK(cfg->routes[0].name == "llama");
  CHECK(cfg->io == io_backend::auto_select);
  CHECK(cfg->workers == 0);
}

TEST_CASE("the shipped example config is valid") {
  auto cfg = load_file(MERIDIAN_SOURCE_DIR "/config/meridian.example.yaml");
  CHECK(cfg->routes.size() >= 2);
  CHECK(cfg->any_model_route());
}

TEST_CASE("errors name the file, line, key and reason") {
  auto e = error_of(base + "workers: many\n");
  CHECK(e.find("test.yaml:10:") != std::string::npos);
  CHECK(e.find("workers") != std::string::npos);
  CHECK(e.find("expected a whole number") != std::string::npos);

  e = error_of(base + "timeouts: { header: soon }\n");
  CHECK(e.find("timeouts.header") != std::string::npos);
  CHECK(e.find("invalid duration 'soon'") != std::string::npos);

  e = error_of(base + "limits: { max_body_bytes: lots }\n");
  CHECK(e.find("limits.max_body_bytes") != std::string::npos);

  e = error_of(base + "colour: blue\n");
  CHECK(e.find("colour: unknown key") != std::string::npos);

  e = error_of(base, {"clusters[0].balancer=fastest"});
  CHECK(e.find("clusters[0].balancer") != std::string::npos);
  CHECK(e.find("unknown balancer 'fastest'") != std::string::npos);

  e = error_of(base, {"routes[0].cluster=nope"});
  CHECK(e.find("no cluster named 'nope'") != std::string::npos);

  e = error_of(base, {"io_backend=kqueue"});
  CHECK(e.find("io_backend") != std::string::npos);

  e = error_of("listeners: []\n");
  CHECK(e.find("listeners") != std::string::npos);

  e = error_of("listeners: [ {address: 1.2.3.4:80} ]\n  bad: [\n");
  CHECK(e.find("YAML syntax error") != std::string::npos);

  e = error_of(base + "io_backend: epoll\nclusters: []\n");
  CHECK(e.find("clusters: duplicate key") != std::string::npos);
}

TEST_CASE("--set overrides reach any key") {
  auto cfg = load_string(base, "t",
                         {"workers=3", "clusters[0].balancer=round_robin", "timeouts.idle=5s",
                          "access_log=off", "listeners[0].address=127.0.0.1:8088"});
  CHECK(cfg->workers == 3);
  CHECK(cfg->clusters[0].balancer == balancer_kind::round_robin);
  CHECK(cfg->timeouts.idle == std::chrono::seconds(5));
  CHECK_FALSE(cfg->access_log);
  CHECK(cfg->listeners[0].address.port == 8088);
  CHECK(error_of(base, {"noequals"}).find("expected key.path=value") != std::string::npos);
  CHECK(error_of(base, {"clusters[7].name=x"}).find("no element [7]") != std::string::npos);
}

TEST_CASE("route matches are parsed and validated") {
  auto cfg = load_string(base + R"(  - match: { path: /exact, host: API.example.com, method: POST,
              headers: { X-Tenant: a }, model: m1 }
    cluster: llama
)",
                         "t");
  const auto& m = cfg->routes[1].match;
  CHECK(*m.path == "/exact");
  CHECK(*m.host == "api.example.com");
  CHECK(*m.method == "POST");
  CHECK(m.headers[0].name == "x-tenant");
  CHECK(*m.model == "m1");
  CHECK(error_of(base + "  - { match: { path_prefix: v1 }, cluster: llama }\n")
            .find("must start with /") != std::string::npos);
  CHECK(error_of(base + "  - { match: { method: post }, cluster: llama }\n").find("upper-case") !=
        std::string::npos);
}

TEST_CASE("listeners may not share an address or a name") {
  const std::string rest = R"(clusters:
  - { name: llama, endpoints: [ 127.0.0.1:9201 ] }
routes:
  - { cluster: llama }
)";
  auto with = [&](const std::string& a, const std::string& b) {
    return "listeners:\n  - { name: a, address: '" + a + "' }\n  - { name: b, address: '" + b +
           "' }\n" + rest;
  };
  // The same address twice would share the port through SO_REUSEPORT, silently.
  auto e = error_of(with("127.0.0.1:8080", "127.0.0.1:8080"));
  CHECK(e.find("test.yaml:3:25: listeners[1].address: duplicate listener address "
               "127.0.0.1:8080 (listeners[0] 'a' binds 127.0.0.1:8080)") == 0);
  CHECK(error_of(with("localhost:8080", "127.0.0.1:8080")).find("duplicate listener address") !=
        std::string::npos);
  CHECK(error_of(with("[::1]:8080", "[0:0::1]:8080")).find("duplicate listener address") !=
        std::string::npos);
  // An IPv4-mapped IPv6 address is the IPv4 address.
  CHECK(error_of(with("127.0.0.1:8080", "[::ffff:127.0.0.1]:8080"))
            .find("duplicate listener address") != std::string::npos);
  // A wildcard binds the port on every interface: it overlaps any address with that port.
  for (auto [a, b] : {std::pair<std::string, std::string>{"0.0.0.0:8080", "127.0.0.1:8080"},
                      {"10.1.2.3:8080", "0.0.0.0:8080"},
                      {"[::]:8080", "127.0.0.1:8080"},
                      {"[::1]:8080", "[::]:8080"},
                      {"0.0.0.0:8080", "[::]:8080"}}) {
    CAPTURE(a);
    CAPTURE(b);
    e = error_of(with(a, b));
    CHECK(e.find("test.yaml:3:25: listeners[1].address: ") == 0);
    CHECK(e.find("overlaps listeners[0] 'a'") != std::string::npos);
  }
  // Distinct binds are fine, and port 0 is a fresh ephemeral port each time.
  for (auto [a, b] : {std::pair<std::string, std::string>{"127.0.0.1:8080", "127.0.0.1:8081"},
                      {"127.0.0.1:8080", "127.0.0.2:8080"},
                      {"127.0.0.1:0", "127.0.0.1:0"},
                      {"0.0.0.0:0", "127.0.0.1:0"},
                      {"0.0.0.0:8080", "127.0.0.1:8081"}}) {
    CAPTURE(a);
    CAPTURE(b);
    CHECK(error_of(with(a, b)).empty());
  }
  e = error_of(
      "listeners:\n  - { name: a, address: 127.0.0.1:0 }\n  - { name: a, address: "
      "127.0.0.1:0 }\n" +
      rest);
  CHECK(e.find("test.yaml:3:13: listeners[1].name: duplicate listener name 'a' (listeners[0] "
               "has it too)") == 0);
  // A listener without a name is named listener<i>; naming another one that is a clash too.
  e = error_of(
      "listeners:\n  - { address: 127.0.0.1:0 }\n  - { name: listener0, address: "
      "127.0.0.1:0 }\n" +
      rest);
  CHECK(e.find("listeners[1].name: duplicate listener name 'listener0'") != std::string::npos);
  // Overrides are checked like the file.
  e = error_of(with("127.0.0.1:8080", "127.0.0.1:8081"), {"listeners[1].address=127.0.0.1:8080"});
  CHECK(e.find("listeners[1].address: duplicate listener address") != std::string::npos);
}

TEST_CASE("the body prebuffer is read, capped and defaults to 64KiB") {
  CHECK(load_string(base, "test.yaml")->limits.body_prebuffer_bytes == 64 * 1024);
  auto cfg = load_string(base + "limits: { body_prebuffer_bytes: 1MiB }\n", "test.yaml");
  CHECK(cfg->limits.body_prebuffer_bytes == 1024 * 1024);
  auto e = error_of(base + "limits: { body_prebuffer_bytes: 1GiB }\n");
  CHECK(e.find("limits.body_prebuffer_bytes: must be at most 16MiB") != std::string::npos);
}

TEST_CASE("routing sections: a default timeout fits a shorter interval; a given one must") {
  auto cfg = load_string(base, "test.yaml", {"clusters[0].models.interval=500ms"});
  CHECK(cfg->clusters[0].models.timeout == std::chrono::milliseconds(500));
  auto e = error_of(base, {"clusters[0].probe.interval=100ms", "clusters[0].probe.timeout=200ms"});
  CHECK(e.find("clusters[0].probe.timeout: must not be longer than the interval") !=
        std::string::npos);
}

TEST_CASE("prefix affinity: on for latency-aware inference clusters unless turned off") {
  auto dflt = load_string(base, "test.yaml", {"clusters[0].kind=inference"});
  CHECK(dflt->clusters[0].prefix_affinity.enabled);
  auto off = load_string(base, "test.yaml",
                         {"clusters[0].kind=inference", "clusters[0].prefix_affinity=false"});
  CHECK_FALSE(off->clusters[0].prefix_affinity.enabled);
  auto rr = load_string(base, "test.yaml",
                        {"clusters[0].kind=inference", "clusters[0].balancer=round_robin"});
  CHECK_FALSE(rr->clusters[0].prefix_affinity.enabled);
  auto on =
      load_string(base, "test.yaml",
                  {"clusters[0].kind=inference", "clusters[0].prefix_affinity.block_bytes=128",
                   "clusters[0].prefix_affinity.session_header=X-Session-Id"});
  const auto& pa = on->clusters[0].prefix_affinity;
  CHECK(pa.enabled);
  CHECK(pa.block_bytes == 128);
  CHECK(pa.capacity == 65536);
  CHECK(pa.load_factor == doctest::Approx(1.25));
  CHECK(pa.session_header == "x-session-id");
  auto e =
      error_of(base, {"clusters[0].kind=inference", "clusters[0].prefix_affinity.block_bytes=8"});
  CHECK(e.find("clusters[0].prefix_affinity.block_bytes: must be between 16 and 4096") !=
        std::string::npos);
  e = error_of(base, {"clusters[0].kind=inference", "clusters[0].prefix_affinity.load_factor=0.5"});
  CHECK(e.find("clusters[0].prefix_affinity.load_factor") != std::string::npos);
  e = error_of(base,
               {"clusters[0].kind=inference", "clusters[0].prefix_affinity.session_header=a b"});
  CHECK(e.find("is not a header name") != std::string::npos);
  e = error_of(base, {"clusters[0].kind=inference", "clusters[0].prefix_affinity.colour=red"});
  CHECK(e.find("colour: unknown key") != std::string::npos);
  e = error_of(base, {"clusters[0].prefix_affinity.block_bytes=64"});
  CHECK(e.find("needs kind: inference and balancer: latency_aware") != std::string::npos);
  e = error_of(base, {"clusters[0].kind=inference", "clusters[0].balancer=round_robin",
                      "clusters[0].prefix_affinity=true"});
  CHECK(e.find("needs kind: inference and balancer: latency_aware") != std::string::npos);
  CHECK(error_of(base, {"clusters[0].kind=generic", "clusters[0].prefix_affinity=false"}).empty());
}

TEST_CASE("timeouts and retries: cluster values from the global defaults, routes override keys") {
  std::string y = base + "timeouts: { upstream_connect: 1s, upstream_idle: 30s }\n";
  y.replace(y.find("cluster: llama }"), 16,
            "cluster: llama, retries: { on: [connect_failure, 503] } }");
  auto cfg = load_string(y, "test.yaml",
                         {"clusters[0].timeouts.first_byte=20s", "clusters[0].retries.attempts=2",
                          "clusters[0].retries.budget.ratio=0.5", "routes[0].timeouts.total=45s"});
  const auto& c = cfg->clusters[0];
  using std::chrono::seconds;
  CHECK(c.timeouts.connect == seconds(1));  // the global upstream_connect
  CHECK(c.timeouts.first_byte == seconds(20));
  CHECK(c.timeouts.idle == seconds(30));
  CHECK(c.timeouts.total == duration::zero());
  CHECK(c.retries.attempts == 2);
  CHECK(c.retries.budget_ratio == doctest::Approx(0.5));
  CHECK(c.retries.on == (retry_connect_failure | retry_reset_before_request));
  const auto& r = cfg->routes[0];
  CHECK(r.timeouts.first_byte == seconds(20));  // the cluster's, where the route says nothing
  CHECK(r.timeouts.total == seconds(45));
  CHECK(r.retries.attempts == 2);
  CHECK(r.retries.on == (retry_connect_failure | retry_status_503));
  // A route shares its cluster's budget; unknown conditions and bad counts are named.
  CHECK(error_of(base, {"routes[0].retries.budget.ratio=1"})
            .find("routes[0].retries.budget: unknown key (expected one of: attempts, on)") !=
        std::string::npos);
  CHECK(error_of(base, {"clusters[0].retries.on=[timeout]"})
            .find("clusters[0].retries.on[0]: unknown condition 'timeout'") != std::string::npos);
  CHECK(error_of(base, {"clusters[0].retries.attempts=0"}).find("clusters[0].retries.attempts") !=
        std::string::npos);
  CHECK(error_of(base, {"clusters[0].timeouts.idle=0s"})
            .find("clusters[0].timeouts.idle: must be positive") != std::string::npos);
  CHECK(error_of(base, {"clusters[0].timeouts.deadline=1s"}).find("unknown key") !=
        std::string::npos);
  auto none = load_string(base, "test.yaml", {"routes[0].timeouts.total=none"});
  CHECK(none->routes[0].timeouts.total == duration::zero());
}

TEST_CASE("a route's hedge: a delay or a percentile, a budget; mistakes are named") {
  auto off = load_string(base, "test.yaml");
  CHECK_FALSE(off->routes[0].hedge.enabled);
  auto fixed = load_string(base, "test.yaml", {"routes[0].hedge.after=150ms"});
  CHECK(fixed->routes[0].hedge.enabled);
  CHECK(fixed->routes[0].hedge.after == std::chrono::milliseconds(150));
  CHECK(fixed->routes[0].hedge.quantile == 0);
  CHECK(fixed->routes[0].hedge.max_extra == doctest::Approx(0.05));
  auto pct = load_string(base, "test.yaml",
                         {"routes[0].hedge.after=p99.5", "routes[0].hedge.max_extra=0.1"});
  CHECK(pct->routes[0].hedge.quantile == doctest::Approx(0.995));
  CHECK(pct->routes[0].hedge.max_extra == doctest::Approx(0.1));
  CHECK(error_of(base, {"routes[0].hedge.max_extra=0.1"}).find("routes[0].hedge.after: missing") !=
        std::string::npos);
  CHECK(error_of(base, {"routes[0].hedge.after=p100"})
            .find("routes[0].hedge.after: invalid percentile 'p100'") != std::string::npos);
  CHECK(error_of(base, {"routes[0].hedge.after=pfast"}).find("invalid percentile") !=
        std::string::npos);
  CHECK(error_of(base, {"routes[0].hedge.after=0s"})
            .find("routes[0].hedge.after: must be positive") != std::string::npos);
  CHECK(error_of(base, {"routes[0].hedge.after=1s", "routes[0].hedge.max_extra=2"})
            .find("routes[0].hedge.max_extra: must be between") != std::string::npos);
  CHECK(error_of(base, {"routes[0].hedge.after=1s", "routes[0].hedge.delay=1s"})
            .find("routes[0].hedge.delay: unknown key") != std::string::npos);
}

TEST_CASE("admission: no in-flight cap and a queue as deep as the connections unless set") {
  auto dflt = load_string(base, "test.yaml");
  CHECK(dflt->clusters[0].limits.max_inflight == 0);
  CHECK_FALSE(dflt->clusters[0].limits.max_pending.has_value());
  auto set = load_string(base, "test.yaml",
                         {"clusters[0].limits.max_inflight=8", "clusters[0].limits.max_pending=0"});
  CHECK(set->clusters[0].limits.max_inflight == 8);
  CHECK(set->clusters[0].limits.max_pending == 0u);
  CHECK(error_of(base, {"clusters[0].limits.max_pending=lots"})
            .find("clusters[0].limits.max_pending") != std::string::npos);
}

TEST_CASE("outlier ejection: hedge races lost in a row, 5 unless set, 0 turns it off") {
  auto dflt = load_string(base, "test.yaml");
  CHECK(dflt->clusters[0].outlier.consecutive_hedge_losses == 5);
  auto off = load_string(base, "test.yaml", {"clusters[0].outlier.consecutive_hedge_losses=0"});
  CHECK(off->clusters[0].outlier.consecutive_hedge_losses == 0);
  CHECK(error_of(base, {"clusters[0].outlier.consecutive_hedge_losses=-1"})
            .find("clusters[0].outlier.consecutive_hedge_losses") != std::string::npos);
  CHECK(error_of(base, {"clusters[0].outlier.consecutive_hedge_lost=3"}).find("unknown key") !=
        std::string::npos);
}

TEST_CASE("a cluster's client share: ip or a header name, a share in (0, 1]") {
  auto cfg = load_string(
      base, "test.yaml",
      {"clusters[0].limits.client_key=X-API-Key", "clusters[0].limits.client_share=0.25"});
  CHECK(cfg->clusters[0].limits.client_key == "x-api-key");
  CHECK(cfg->clusters[0].limits.client_share == doctest::Approx(0.25));
  CHECK(load_string(base, "test.yaml", {"clusters[0].limits.client_key=ip"})
            ->clusters[0]
            .limits.client_share == doctest::Approx(0.5));
  CHECK(error_of(base, {"clusters[0].limits.client_share=0.3"})
            .find("clusters[0].limits.client_share: needs client_key") != std::string::npos);
  CHECK(error_of(base, {"clusters[0].limits.client_key='a b'"})
            .find("is neither ip, tls_client nor a header name") != std::string::npos);
  CHECK(error_of(base, {"clusters[0].limits.client_key=ip", "clusters[0].limits.client_share=2"})
            .find("clusters[0].limits.client_share: must be between") != std::string::npos);
}

TEST_CASE("storage clusters: bandwidth_aware by default, write_to, and resume on by default") {
  const std::string storage = R"(listeners:
  - { name: public, address: 127.0.0.1:0 }
clusters:
  - name: objects
    kind: storage
    endpoints: [ 127.0.0.1:9301, 127.0.0.1:9302 ]
routes:
  - { name: get, match: { path_prefix: /a/ }, cluster: objects }
  - { name: off, match: { path_prefix: /b/ }, cluster: objects, resume: false }
  - { name: more, match: { path_prefix: /c/ }, cluster: objects, resume: { attempts: 4 } }
)";
  auto cfg = load_string(storage, "test.yaml", {});
  CHECK(cfg->clusters[0].balancer == balancer_kind::bandwidth_aware);
  CHECK(cfg->clusters[0].write_to == write_target::first_healthy);
  CHECK(cfg->routes[0].resume.attempts == 2);
  CHECK(cfg->routes[1].resume.attempts == 0);
  CHECK(cfg->routes[2].resume.attempts == 4);
  cfg = load_string(storage, "test.yaml", {"clusters[0].write_to=zone_local"});
  CHECK(cfg->clusters[0].write_to == write_target::zone_local);

  auto e = error_of(storage, {"clusters[0].write_to=nearest"});
  CHECK(e.find("unknown value 'nearest' (expected first_healthy or zone_local)") !=
        std::string::npos);
  e = error_of(storage, {"clusters[0].balancer=round_robin", "clusters[0].write_to=zone_local"});
  CHECK(e.find("write_to: is read by the bandwidth_aware balancer") != std::string::npos);
  e = error_of(base, {"clusters[0].balancer=bandwidth_aware"});
  CHECK(e.find("the cluster must be kind: storage") != std::string::npos);
  e = error_of(base, {"routes[0].resume=true"});
  CHECK(e.find("resumes OpenAI streams or object GETs") != std::string::npos);

  CHECK_FALSE(cfg->clusters[0].stripe.enabled);
  cfg = load_string(storage, "test.yaml", {"clusters[0].stripe=true"});
  CHECK(cfg->clusters[0].stripe.enabled);
  CHECK(cfg->clusters[0].stripe.part_size == 8u << 20);
  cfg = load_string(storage, "test.yaml",
                    {"clusters[0].stripe.min_size=1GiB", "clusters[0].stripe.part_size=16MiB",
                     "clusters[0].stripe.max_parallel=6"});
  CHECK(cfg->clusters[0].stripe.min_size == 1u << 30);
  CHECK(cfg->clusters[0].stripe.max_parallel == 6);
  e = error_of(storage, {"clusters[0].stripe.part_size=1KiB"});
  CHECK(e.find("must be between 64KiB and 256MiB") != std::string::npos);
  e = error_of(storage, {"clusters[0].stripe.min_size=8MiB"});
  CHECK(e.find("at least twice part_size") != std::string::npos);
  e = error_of(storage, {"clusters[0].stripe.max_parallel=1"});
  CHECK(e.find("max_parallel") != std::string::npos);
  e = error_of(base, {"clusters[0].stripe=true"});
  CHECK(e.find("the cluster must be kind: storage") != std::string::npos);
}

TEST_CASE("--check: the admin port is a port of its own, and every wrong part is named at once") {
  const std::string rest = R"(clusters:
  - { name: llama, endpoints: [ 127.0.0.1:9201 ] }
routes:
  - { cluster: llama }
)";
  for (const char* admin : {"127.0.0.1:8080", "'[::ffff:127.0.0.1]:8080'", "0.0.0.0:8080"}) {
    CAPTURE(admin);
    auto e = error_of("listeners: [ { name: public, address: 127.0.0.1:8080 } ]\nadmin: { address: " +
                      std::string(admin) + " }\n" + rest);
    CHECK(e.find("admin.address: ") != std::string::npos);
    CHECK(e.find("is where listener 'public' binds") != std::string::npos);
  }
  CHECK(error_of("listeners: [ { name: public, address: 127.0.0.1:8080 } ]\n"
                 "admin: { address: 127.0.0.1:9901 }\n" + rest)
            .empty());
  // Three mistakes in three parts: all three reported, each with its place.
  auto e = error_of(R"(listeners: [ { name: public, address: 127.0.0.1:8080 } ]
workers: lots
clusters:
  - { name: llama, endpoints: [ 127.0.0.1:9201 ], balancer: fastest }
routes:
  - { cluster: llama }
limits: { max_headers: 0 }
)");
  CHECK(e.find("workers") != std::string::npos);
  CHECK(e.find("clusters[0].balancer") != std::string::npos);
  CHECK(e.find("limits.max_headers") != std::string::npos);
  CHECK(std::count(e.begin(), e.end(), '\n') == 2);
}

TEST_CASE("HTTP/2 settings: h2c on plain listeners, max_concurrent_streams within bounds") {
  auto with = [&](const std::string& listener, const std::string& limits) {
    return "listeners:\n  - { name: public, address: 127.0.0.1:0" + listener + " }\n" + limits +
           base.substr(base.find("clusters:"));
  };
  auto cfg = load_string(with(", http2: true", "limits: { max_concurrent_streams: 250 }\n"), "t.yaml");
  CHECK(cfg->listeners[0].http2);
  CHECK(cfg->limits.max_concurrent_streams == 250);
  cfg = load_string(with("", ""), "t.yaml");
  CHECK_FALSE(cfg->listeners[0].http2);
  CHECK(cfg->limits.max_concurrent_streams == 100);
  auto e = error_of(with(", http2: yes-please", ""));
  CHECK(e.find("listeners[0].http2") != std::string::npos);
  e = error_of(with("", "limits: { max_concurrent_streams: 0 }\n"));
  CHECK(e.find("limits.max_concurrent_streams") != std::string::npos);
}

TEST_CASE("gRPC clusters and routes: grpc_inference over h2c, grpc_service, what is not built refused") {
  auto yaml = [](const std::string& cluster, const std::string& match) {
    return "listeners: [ { name: public, address: 127.0.0.1:0, http2: true } ]\nclusters:\n  - " +
           cluster + "\nroutes:\n  - { match: " + match + ", cluster: triton }\n";
  };
  const std::string triton = "{ name: triton, kind: grpc_inference, endpoints: [ 127.0.0.1:8001 ] }";
  auto cfg = load_string(yaml(triton, "{ grpc_service: inference.GRPCInferenceService, model: resnet }"),
                         "t.yaml");
  CHECK(cfg->clusters[0].kind == cluster_kind::grpc_inference);
  CHECK(cfg->clusters[0].balancer == balancer_kind::latency_aware);
  CHECK(cfg->clusters[0].models.enabled);  // RepositoryIndex, on by default
  CHECK(cfg->clusters[0].models.path == "/inference.GRPCInferenceService/RepositoryIndex");
  CHECK_FALSE(cfg->clusters[0].probe.enabled);
  CHECK(cfg->routes[0].match.grpc_service == "inference.GRPCInferenceService");
  CHECK(cfg->routes[0].match.path_prefix == "/inference.GRPCInferenceService/");
  CHECK(cfg->routes[0].match.model == "resnet");
  CHECK(load_string(yaml("{ name: triton, kind: grpc_inference, protocol: h2c, endpoints: [ 127.0.0.1:8001 ] }",
                         "{ grpc_service: inference.GRPCInferenceService }"),
                    "t.yaml"));

  auto e = error_of(yaml("{ name: triton, kind: grpc_inference, protocol: h2, endpoints: [ 127.0.0.1:8001 ] }",
                         "{ path_prefix: / }"));
  CHECK(e.find("clusters[0].protocol: h2 is HTTP/2 over TLS: the cluster needs a tls block") != std::string::npos);
  // TLS to gRPC backends: h2 by ALPN, the only protocol offered.
  cfg = load_string(yaml("{ name: triton, kind: grpc_inference, protocol: h2, tls: { verify: false }, "
                         "endpoints: [ 127.0.0.1:8001 ] }", "{ path_prefix: / }"), "t.yaml");
  REQUIRE(cfg->clusters[0].tls);
  CHECK(cfg->clusters[0].tls->h2);
  e = error_of(yaml("{ name: triton, kind: grpc_inference, protocol: h2c, tls: { verify: false }, "
                    "endpoints: [ 127.0.0.1:8001 ] }", "{ path_prefix: / }"));
  CHECK(e.find("h2c is HTTP/2 without TLS, but the cluster has a tls block") != std::string::npos);
  // Health, models and load through the gRPC services and the metrics port.
  cfg = load_string(yaml("{ name: triton, kind: grpc_inference, probe: { interval: 2s }, "
                         "models: { names: [ resnet, bert/v2 ] }, load_metrics: { port: 8002 }, "
                         "endpoints: [ 127.0.0.1:8001 ] }",
                         "{ path_prefix: / }"),
                    "t.yaml");
  CHECK(cfg->clusters[0].probe.path == "/inference.GRPCInferenceService/ServerReady");
  CHECK(cfg->clusters[0].models.names == std::vector<std::string>{"resnet", "bert/v2"});
  CHECK(cfg->clusters[0].load_metrics.port == 8002);
  cfg = load_string(yaml("{ name: triton, kind: grpc_inference, probe: { path: /grpc.health.v1.Health/Check }, "
                         "endpoints: [ 127.0.0.1:8001 ] }",
                         "{ path_prefix: / }"),
                    "t.yaml");
  CHECK(cfg->clusters[0].probe.path == "/grpc.health.v1.Health/Check");
  e = error_of(yaml("{ name: triton, kind: grpc_inference, probe: { path: /v2/health/ready }, endpoints: [ 127.0.0.1:8001 ] }",
                    "{ path_prefix: / }"));
  CHECK(e.find("clusters[0].probe.path: a gRPC cluster's probe calls "
               "/inference.GRPCInferenceService/ServerReady or /grpc.health.v1.Health/Check") !=
        std::string::npos);
  e = error_of(yaml("{ name: triton, kind: grpc_inference, load_metrics: { path: /metrics }, endpoints: [ 127.0.0.1:8001 ] }",
                    "{ path_prefix: / }"));
  CHECK(e.find("clusters[0].load_metrics.port: a gRPC backend serves its metrics on a port of its own") !=
        std::string::npos);
  e = error_of(yaml("{ name: triton, kind: grpc_inference, models: { path: /v1/models }, endpoints: [ 127.0.0.1:8001 ] }",
                    "{ path_prefix: / }"));
  CHECK(e.find("clusters[0].models.path: a gRPC cluster's models come from RepositoryIndex") !=
        std::string::npos);
  e = error_of(yaml("{ name: triton, kind: grpc_inference, prefix_affinity: true, endpoints: [ 127.0.0.1:8001 ] }",
                    "{ path_prefix: / }"));
  CHECK(e.find("clusters[0].prefix_affinity: not available for kind: grpc_inference") != std::string::npos);
  // Retries on gRPC statuses (Envoy's names), for gRPC clusters only; no hedge or resume there.
  cfg = load_string(yaml(triton, "{ grpc_service: inference.GRPCInferenceService }, "
                                 "retries: { on: [ connect_failure, unavailable, resource-exhausted ] }"),
                    "t.yaml");
  CHECK(cfg->routes[0].retries.on ==
        (retry_connect_failure | retry_grpc_status));
  CHECK(cfg->routes[0].retries.grpc_codes == ((1u << 14) | (1u << 8)));
  e = error_of(yaml(triton, "{ grpc_service: inference.GRPCInferenceService }, retries: { on: [ 503 ] }"));
  CHECK(e.find("retries.on[0]: a gRPC answer carries grpc-status: retry on unavailable, not 503") !=
        std::string::npos);
  e = error_of(yaml("{ name: triton, endpoints: [ 127.0.0.1:8001 ], retries: { on: [ unavailable ] } }",
                    "{ path_prefix: / }"));
  CHECK(e.find("clusters[0].retries.on[0]: 'unavailable' is a gRPC status: for kind: grpc_inference clusters") !=
        std::string::npos);
  e = error_of(yaml(triton, "{ grpc_service: inference.GRPCInferenceService }, hedge: { after: 1s }"));
  CHECK(e.find("routes[0].hedge: not available on a route to kind: grpc_inference") != std::string::npos);
  e = error_of(yaml("{ name: triton, models: { names: [ a ] }, endpoints: [ 127.0.0.1:8001 ] }",
                    "{ path_prefix: / }"));
  CHECK(e.find("clusters[0].models.names: only kind: grpc_inference clusters check listed models") !=
        std::string::npos);
  e = error_of(yaml("{ name: triton, protocol: h2c, endpoints: [ 127.0.0.1:8001 ] }", "{ path_prefix: / }"));
  CHECK(e.find("clusters[0].protocol: only kind: grpc_inference clusters take a protocol") !=
        std::string::npos);
  e = error_of(yaml("{ name: triton, endpoints: [ 127.0.0.1:8001 ] }",
                    "{ grpc_service: inference.GRPCInferenceService }"));
  CHECK(e.find("routes[0].match.grpc_service: cluster 'triton' is not kind: grpc_inference") !=
        std::string::npos);
  e = error_of(yaml(triton, "{ grpc_service: \"inference/GRPC\" }"));
  CHECK(e.find("routes[0].match.grpc_service: expected a gRPC service name") != std::string::npos);
  e = error_of(yaml(triton, "{ grpc_service: inference.GRPCInferenceService, path_prefix: /x }"));
  CHECK(e.find("a gRPC route matches its service, not a path as well") != std::string::npos);
}

TEST_CASE("listeners[].tls: settings read, mistakes refused with the key and the reason") {
  // Any readable file serves as a certificate path here: contents are loaded by the TLS
  // context (the integration tests), not by the config reader.
  const std::string f = MERIDIAN_SOURCE_DIR "/config/meridian.example.yaml";
  auto with = [&](const std::string& tls) {
    return "listeners:\n  - name: public\n    address: 127.0.0.1:0\n    tls:\n" + tls +
           base.substr(base.find("clusters:"));
  };
  const std::string certs = "      certificates: [ { cert: " + f + ", key: " + f + " } ]\n";
  auto cfg = load_string(with(certs + "      min_version: \"1.3\"\n      client_ca: " + f +
                              "\n      session_tickets: false\n      handshake_timeout: 3s\n"),
                         "test.yaml");
  REQUIRE(cfg->listeners[0].tls);
  const auto& t = *cfg->listeners[0].tls;
  CHECK(t.certificates.size() == 1);
  CHECK(t.min_version == 13);
  CHECK(t.alpn == std::vector<std::string>{"http/1.1"});
  CHECK(t.client_ca == f);
  CHECK_FALSE(t.session_tickets);
  CHECK(t.handshake_timeout == std::chrono::seconds(3));
  CHECK_FALSE(load_string(base, "test.yaml")->listeners[0].tls);

  auto e = error_of(with(certs + "      min_version: \"1.1\"\n"));
  CHECK(e.find("listeners[0].tls.min_version: TLS 1.1 is never offered") != std::string::npos);
  CHECK(load_string(with(certs + "      alpn: [h2, http/1.1]\n"), "test.yaml")->listeners[0].tls->alpn ==
        std::vector<std::string>{"h2", "http/1.1"});
  e = error_of(with(certs + "      alpn: [h3, http/1.1]\n"));
  CHECK(e.find("listeners[0].tls.alpn[0]: unknown protocol 'h3' (h2, http/1.1)") != std::string::npos);
  e = error_of(with(certs + "    http2: true\n"));
  CHECK(e.find("listeners[0].http2: h2c is for plain listeners; over TLS, offer h2 by ALPN") !=
        std::string::npos);
  e = error_of(with("      certificates: [ { cert: /nonexistent.crt, key: " + f + " } ]\n"));
  CHECK(e.find("listeners[0].tls.certificates[0].cert: cannot read '/nonexistent.crt'") !=
        std::string::npos);
  e = error_of(with("      certificates: []\n"));
  CHECK(e.find("listeners[0].tls.certificates: expected a non-empty list") != std::string::npos);
  e = error_of(with(certs + "      ocsp: true\n"));
  CHECK(e.find("listeners[0].tls.ocsp: unknown key") != std::string::npos);
  e = error_of(with(certs + "      handshake_timeout: 0s\n"));
  CHECK(e.find("handshake_timeout: must be positive") != std::string::npos);
  // One default certificate at most.
  const std::string two = "      certificates: [ { cert: " + f + ", key: " + f +
                          " }, { cert: " + f + ", key: " + f + ", default: true } ]\n";
  cfg = load_string(with(two), "test.yaml");
  CHECK_FALSE(cfg->listeners[0].tls->certificates[0].is_default);
  CHECK(cfg->listeners[0].tls->certificates[1].is_default);
  e = error_of(with("      certificates: [ { cert: " + f + ", key: " + f + ", default: true }, { cert: " +
                    f + ", key: " + f + ", default: true } ]\n"));
  CHECK(e.find("certificates[1].default: certificates[0] is the default already") !=
        std::string::npos);
}

TEST_CASE("clusters[].tls: settings read, mistakes refused with the key and the reason") {
  const std::string f = MERIDIAN_SOURCE_DIR "/config/meridian.example.yaml";
  auto with = [&](const std::string& tls) {
    auto y = base;
    auto at = y.find("endpoints:", y.find("clusters:"));
    y.insert(at, "tls: " + tls + "\n    ");
    return y;
  };
  auto cfg = load_string(with("{ ca: " + f + ", sni: api.example.test, cert: " + f + ", key: " + f +
                              ", min_version: \"1.3\" }"),
                         "test.yaml");
  REQUIRE(cfg->clusters[0].tls);
  const auto& t = *cfg->clusters[0].tls;
  CHECK(t.ca == f);
  CHECK(t.verify);
  CHECK(t.sni == "api.example.test");
  CHECK(t.cert == f);
  CHECK(t.min_version == 13);
  cfg = load_string(with("{}"), "test.yaml");
  REQUIRE(cfg->clusters[0].tls);
  CHECK(cfg->clusters[0].tls->verify);
  CHECK(cfg->clusters[0].tls->ca.empty());
  CHECK_FALSE(load_string(base, "test.yaml")->clusters[0].tls);

  auto e = error_of(with("{ verify: false, ca: " + f + " }"));
  CHECK(e.find("clusters[0].tls.ca: verify is false") != std::string::npos);
  e = error_of(with("{ cert: " + f + " }"));
  CHECK(e.find("clusters[0].tls.key: missing") != std::string::npos);
  e = error_of(with("{ sni: \"bad name\" }"));
  CHECK(e.find("clusters[0].tls.sni: expected a DNS name") != std::string::npos);
  e = error_of(with("{ ca: /nonexistent.pem }"));
  CHECK(e.find("clusters[0].tls.ca: cannot read '/nonexistent.pem'") != std::string::npos);
  e = error_of(with("{ min_version: \"1.0\" }"));
  CHECK(e.find("TLS 1.0 is never offered") != std::string::npos);
  e = error_of(with("{ alpn: [h2] }"));
  CHECK(e.find("clusters[0].tls.alpn: unknown key") != std::string::npos);
  e = error_of(with("true"));
  CHECK(e.find("clusters[0].tls: expected a map") != std::string::npos);
}
