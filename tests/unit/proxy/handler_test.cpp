// The proxy handler's decisions, through a worker in this process: routes, the model read from
// the body, and what the client sees when there is nowhere to send a request; then the handler
// alone on in-memory exchanges and a manual clock: a pick, a retry, a hedge, a cancellation.
#include "proxy/handler.hpp"

#include <doctest/doctest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include <functional>

#include "support/memory_exchange.hpp"
#include "support/mock_process.hpp"
#include "support/raw_client.hpp"
#include "support/test_backend.hpp"
#include "unit/proxy/harness.hpp"

using namespace meridian;
using namespace std::chrono_literals;
namespace asio = boost::asio;

namespace {
std::optional<test::response> post(std::uint16_t port, const std::string& path,
                                   const std::string& body) {
  test::client c(port);
  c.send("POST " + path + " HTTP/1.1\r\nHost: t\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n\r\n" + body);
  return c.read(3000ms);
}
}  // namespace

TEST_CASE("a request no route matches gets 404 in OpenAI's shape and reaches no backend") {
  test::test_backend be;
  test::proxy_harness h(test::proxy_config(
      {be.port()}, "routes: [ { name: api, match: { path_prefix: /api/ }, cluster: c } ]\n"));
  auto r = test::get(h.port(), "/elsewhere");
  REQUIRE(r);
  CHECK(r->status == 404);
  CHECK(r->body.find("\"code\":\"route_not_found\"") != std::string::npos);
  CHECK(be.connections() == 0);
  CHECK(h.has("meridian_downstream_rejected_total{reason=\"no_route\"} 1"));
}

TEST_CASE("a model route reads the body's model; a second model key is refused") {
  test::test_backend be;
  test::proxy_harness h(test::proxy_config(
      {be.port()},
      "routes: [ { name: m, match: { path_prefix: /v1/, model: foo }, cluster: c } ]\n"));
  auto r = post(h.port(), "/v1/chat", R"({"messages":[],"model":"foo"})");
  REQUIRE(r);
  CHECK(r->status == 200);
  r = post(h.port(), "/v1/chat", R"({"model":"bar"})");
  REQUIRE(r);
  CHECK(r->status == 404);
  r = post(h.port(), "/v1/chat", R"({"model":"foo","model":"foo"})");
  REQUIRE(r);
  CHECK(r->status == 400);
  CHECK(be.requests().size() == 1);
}

TEST_CASE("when every candidate refuses, the client gets 502 after one try per endpoint") {
  std::uint16_t a, b;
  {
    test::test_backend x, y;
    a = x.port();
    b = y.port();
  }
  test::proxy_harness h(test::proxy_config({a, b}));
  auto r = test::get(h.port(), "/x");
  REQUIRE(r);
  CHECK(r->status == 502);
  CHECK(r->body.find("\"code\":\"upstream_unavailable\"") != std::string::npos);
  // Both endpoints were tried once: the first pick and the fallback.
  CHECK(h.reg.endpoint_requests(0, 0) == 1);
  CHECK(h.reg.endpoint_requests(0, 1) == 1);
}

// ---- the handler on an in-memory exchange: no client socket, a manual clock ---------------------

namespace {
// A proxy worker's context and handler on this thread, with a manual clock: the test serves
// exchanges through the handler and advances time itself. The backends are real (loopback).
struct memory_proxy {
  std::shared_ptr<const config::gateway_config> cfg;
  upstream::identity_table ids;
  metrics::registry reg;
  common::manual_clock clock;
  asio::io_context io{1};
  proxy::worker_context ctx;
  proxy::handler h{ctx};

  explicit memory_proxy(std::shared_ptr<const config::gateway_config> c)
      : cfg(std::move(c)),
        reg(proxy::metrics_layout(*cfg), 1),
        ctx(io,
            std::make_shared<const proxy::snapshot>(cfg,
                                                    upstream::resolve_topology(*cfg, ids, reg)),
            reg.worker(0), 11, clock) {}
  ~memory_proxy() {
    h.scratch().clear();
    ctx.ups.close_all_idle();
  }
  test::memory_exchange request(const std::string& path) {
    return test::memory_exchange("GET " + path + " HTTP/1.1\r\nHost: t\r\n\r\n", clock.now());
  }
  // Starts serving `ex`; `done` is set when the handler returns.
  void start(test::memory_exchange& ex, bool& done) {
    asio::co_spawn(
        io,
        [](proxy::handler& h, test::memory_exchange& e, bool& d) -> asio::awaitable<void> {
          co_await h.serve(e);
          d = true;
        }(h, ex, done),
        asio::detached);
  }
  // Runs the worker's loop until `pred` holds (socket events arrive in their own time; bounded).
  bool run_until(const std::function<bool()>& pred) {
    for (int i = 0; i < 1000 && !pred(); ++i) io.run_for(5ms);
    return pred();
  }
  bool serve(test::memory_exchange& ex) {
    bool done = false;
    start(ex, done);
    return run_until([&] { return done; });
  }
  bool counted(const std::string& needle) {
    return reg.serialize().find(needle) != std::string::npos;
  }
};
}  // namespace

TEST_CASE("in memory: a request is picked, sent and its response relayed whole") {
  test::test_backend be;
  memory_proxy p(test::proxy_config({be.port()}));
  auto ex = p.request("/v1/models/x");
  REQUIRE(p.serve(ex));
  CHECK(ex.status() == 200);
  CHECK(ex.body_out == "hello");
  CHECK(ex.ended);
  CHECK(p.reg.endpoint_requests(0, 0) == 1);
  auto got = be.requests();
  REQUIRE(got.size() == 1);
  CHECK(got[0].head.rfind("GET /v1/models/x HTTP/1.1\r\n", 0) == 0);
  CHECK(got[0].head.find("x-forwarded-for: 192.0.2.7") != std::string::npos);
}

TEST_CASE("in memory: a connect failure is retried on the next endpoint, and counted") {
  std::uint16_t dead;
  {
    test::test_backend gone;
    dead = gone.port();
  }
  test::test_backend be;
  memory_proxy p(test::proxy_config({dead, be.port()}));
  // Round robin: one of two requests meets the dead endpoint first.
  for (int i = 0; i < 2; ++i) {
    auto ex = p.request("/r");
    REQUIRE(p.serve(ex));
    CHECK(ex.status() == 200);
    CHECK(ex.body_out == "hello");
  }
  CHECK(be.requests().size() == 2);
  CHECK(p.counted("meridian_upstream_retries_total{cluster=\"c\",reason=\"connect_failure\"} 1"));
}

TEST_CASE("in memory: a hedge sent when the clock passes `after` answers first and wins") {
  test::test_backend slow, fast;
  memory_proxy p(test::proxy_config({slow.port(), fast.port()},
                                    "routes: [ { name: all, match: { path_prefix: / }, cluster: c,"
                                    " hedge: { after: 100ms, max_extra: 1 } } ]\n"));
  // Two requests first, one per endpoint (round robin): the budget allows a hedge per request
  // the route has had, and the next pick is the first endpoint again.
  for (int i = 0; i < 2; ++i) {
    auto warm = p.request("/w");
    REQUIRE(p.serve(warm));
    CHECK(warm.status() == 200);
  }
  REQUIRE(slow.requests().size() == 1);
  slow.stalled = true;  // a head, then no first byte
  auto ex = p.request("/h");
  bool done = false;
  p.start(ex, done);
  // The first try waits on the stalled endpoint; no time passes, so no hedge yet.
  REQUIRE(p.run_until([&] { return slow.requests().size() == 2; }));
  p.io.run_for(20ms);
  CHECK_FALSE(done);
  CHECK(fast.requests().size() == 1);
  p.clock.advance(99ms);
  p.io.run_for(20ms);
  CHECK_FALSE(done);
  p.clock.advance(1ms);
  REQUIRE(p.run_until([&] { return done; }));
  CHECK(ex.status() == 200);
  CHECK(ex.body_out == "hello");
  CHECK(fast.requests().size() == 2);
  CHECK(p.counted("meridian_hedges_total{cluster=\"c\",result=\"won\"} 1"));
  // The losing try was closed: its backend sees the abort.
  CHECK(test::test_backend::eventually([&] { return slow.aborted_streams.load() == 1; }, 3000ms));
}

TEST_CASE("in memory: a client that leaves cancels its upstream request at once") {
  test::test_backend be;
  be.stalled = true;
  memory_proxy p(test::proxy_config({be.port()}));
  auto ex = p.request("/c");
  bool done = false;
  p.start(ex, done);
  REQUIRE(p.run_until([&] { return be.connections() == 1; }));
  p.io.run_for(20ms);
  CHECK_FALSE(done);
  ex.leave();
  REQUIRE(p.run_until([&] { return done; }));
  CHECK(ex.status() == 0);  // nothing was sent
  CHECK(ex.note() == "client went away while waiting for the response");
  CHECK(p.counted("meridian_cancelled_requests_total{phase=\"request\",route=\"all\"} 1"));
  CHECK(test::test_backend::eventually([&] { return be.aborted_streams.load() == 1; }, 3000ms));
}

namespace {
// Two endpoints of an inference cluster `c` behind route `all` (round robin), plus `extra`
// YAML under the cluster and the route.
std::shared_ptr<const config::gateway_config> inference_config(std::uint16_t a, std::uint16_t b,
                                                               const std::string& cluster_extra,
                                                               const std::string& route_extra) {
  return config::load_string(
      "listeners: [ { address: 127.0.0.1:0 } ]\naccess_log: false\n"
      "clusters: [ { name: c, kind: inference, balancer: round_robin, endpoints: [ 127.0.0.1:" +
          std::to_string(a) + ", 127.0.0.1:" + std::to_string(b) + " ]" + cluster_extra +
          " } ]\n"
          "routes: [ { name: all, match: { path_prefix: / }, cluster: c" +
          route_extra + " } ]\n",
      "t");
}

test::memory_exchange post(memory_proxy& p, const std::string& path, const std::string& body) {
  return test::memory_exchange("POST " + path + " HTTP/1.1\r\nHost: t\r\nContent-Length: " +
                                   std::to_string(body.size()) + "\r\n\r\n" + body,
                               p.clock.now());
}
}  // namespace

TEST_CASE("in memory: a stream its endpoint cuts is continued on the other inside one response") {
  test::test_backend cutter, good;
  cutter.cut_streams = true;
  memory_proxy p(inference_config(cutter.port(), good.port(), "", ", resume: { attempts: 1 }"));
  auto ex = post(p, "/stream/chat/completions",
                 R"({"model":"m","stream":true,"max_tokens":10,)"
                 R"("messages":[{"role":"user","content":"say abcd"}]})");
  REQUIRE(p.serve(ex));
  CHECK(ex.status() == 200);
  CHECK(ex.ended);
  // Two tokens from the endpoint that died, then the continuation's four (the mock repeats its
  // script; a real engine would go on from "ab").
  CHECK(ex.body_out.find(R"("content":"b")") < ex.body_out.find("[DONE]"));
  CHECK(ex.body_out.find("error") == std::string::npos);
  auto cont = good.requests();
  REQUIRE(cont.size() == 1);
  CHECK(cont[0].body.find(R"("continue_final_message":true)") != std::string::npos);
  CHECK(cont[0].body.find(R"("content":"ab")") != std::string::npos);
  CHECK(cont[0].body.find(R"("max_tokens":8)") != std::string::npos);
  CHECK(p.counted("meridian_stream_resumes_total{cluster=\"c\",result=\"ok\"} 1"));
}

TEST_CASE("in memory: a model route reads the body; a second model key never reaches a backend") {
  test::test_backend a, b;
  memory_proxy p(config::load_string(
      "listeners: [ { address: 127.0.0.1:0 } ]\naccess_log: false\n"
      "clusters: [ { name: c, balancer: round_robin, endpoints: [ 127.0.0.1:" +
          std::to_string(a.port()) +
          " ] }, { name: d, balancer: round_robin, endpoints: [ 127.0.0.1:" +
          std::to_string(b.port()) +
          " ] } ]\n"
          "routes: [ { name: big, match: { path_prefix: /v1/, model: big }, cluster: d },"
          " { name: all, match: { path_prefix: / }, cluster: c } ]\n",
      "t"));
  auto big = post(p, "/v1/x", R"({"messages":[],"model":"big"})");
  REQUIRE(p.serve(big));
  CHECK(big.status() == 200);
  auto other = post(p, "/v1/x", R"({"model":"small"})");
  REQUIRE(p.serve(other));
  CHECK(other.status() == 200);
  auto twice = post(p, "/v1/x", R"({"model":"big","model":"small"})");
  REQUIRE(p.serve(twice));
  CHECK(twice.status() == 400);
  CHECK(twice.body_out.find("more than once") != std::string::npos);
  CHECK(b.requests().size() == 1);
  CHECK(a.requests().size() == 1);
}

TEST_CASE("in memory: a cold object's GET is striped over the replicas and delivered as one 200") {
  test::mock_process a({"--name", "a", "--object", "/w=4MiB"}, "storage");
  test::mock_process b({"--name", "b", "--object", "/w=4MiB"}, "storage");
  memory_proxy p(config::load_string(
      "listeners: [ { address: 127.0.0.1:0 } ]\naccess_log: false\n"
      "clusters: [ { name: s, kind: storage, endpoints: [ 127.0.0.1:" +
          std::to_string(a.port()) + ", 127.0.0.1:" + std::to_string(b.port()) +
          " ], stripe: { min_size: 2MiB, part_size: 1MiB, max_parallel: 2 } } ]\n"
          "routes: [ { name: all, match: { path_prefix: / }, cluster: s } ]\n",
      "t"));
  auto ex = p.request("/w");
  REQUIRE(p.serve(ex));
  CHECK(ex.status() == 200);
  CHECK(ex.ended);
  auto direct = test::http_request(a.port(), "GET", "/w");
  REQUIRE(direct.body.size() == 4u << 20);
  CHECK(ex.body_out == direct.body);
  CHECK(p.counted("meridian_storage_stripes_total{cluster=\"s\"} 1"));
  CHECK(p.counted("meridian_storage_parts_total{cluster=\"s\",result=\"ok\"} 4"));
  // Both replicas served parts.
  CHECK(p.reg.endpoint_requests(0, 0) > 0);
  CHECK(p.reg.endpoint_requests(0, 1) > 0);
}
