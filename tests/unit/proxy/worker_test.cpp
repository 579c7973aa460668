// A proxy worker in this process (handler, attempts, retry policy, relay) against the test
// backend, with the metrics it writes read back.
#include "meridian/proxy/worker.hpp"

#include <doctest/doctest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <thread>

#include "support/raw_client.hpp"
#include "support/test_backend.hpp"

using namespace meridian;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {
metrics::layout layout_of(const config::gateway_config& cfg) {
  metrics::layout l;
  for (const auto& r : cfg.routes) {
    l.routes.push_back(r.name);
    l.route_clusters.push_back(r.cluster);
  }
  for (const auto& c : cfg.clusters) {
    l.clusters.push_back(c.name);
    auto& eps = l.endpoints.emplace_back();
    for (const auto& e : c.endpoints) eps.push_back(e.address.to_string());
  }
  return l;
}

std::shared_ptr<const config::gateway_config> config_for(std::vector<std::uint16_t> ports) {
  std::string eps;
  for (auto p : ports)
    eps += (eps.empty() ? "" : ", ") + std::string("127.0.0.1:") + std::to_string(p);
  return config::load_string(
      "listeners: [ { address: 127.0.0.1:0 } ]\naccess_log: false\n"
      "clusters: [ { name: c, balancer: round_robin, endpoints: [ " +
          eps +
          " ] } ]\n"
          "routes: [ { name: all, match: { path_prefix: / }, cluster: c } ]\n",
      "t");
}

// The order the gateway keeps at shutdown: close, let parked operations finish, release the
// worker's I/O objects, then the io_context, then the worker.
struct harness {
  std::shared_ptr<const config::gateway_config> cfg;
  upstream::identity_table ids;
  metrics::registry reg;
  std::unique_ptr<asio::io_context> io = std::make_unique<asio::io_context>(1);
  std::unique_ptr<proxy::worker> w;
  tcp::acceptor acceptor{*io, {asio::ip::make_address("127.0.0.1"), 0}};
  asio::executor_work_guard<asio::io_context::executor_type> guard{io->get_executor()};
  std::thread thread;

  explicit harness(std::shared_ptr<const config::gateway_config> c)
      : cfg(std::move(c)), reg(layout_of(*cfg), 1) {
    auto snap = std::make_shared<const proxy::snapshot>(cfg, upstream::resolve_topology(*cfg, ids));
    w = std::make_unique<proxy::worker>(*io, snap, reg.worker(0), 42);
    asio::co_spawn(*io, accept(), asio::detached);
    thread = std::thread([this] { io->run(); });
  }
  ~harness() {
    asio::post(*io, [this] {
      boost::system::error_code ignored;
      acceptor.close(ignored);
      w->abort_all();
      guard.reset();
    });
    thread.join();
    w->release_io();
    io.reset();
    w.reset();
  }
  asio::awaitable<void> accept() {
    while (true) {
      auto [ec, s] = co_await acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
      if (ec) co_return;
      w->serve(std::move(s));
    }
  }
  std::uint16_t port() const { return acceptor.local_endpoint().port(); }
  void publish(std::shared_ptr<const proxy::snapshot> s) {
    asio::post(*io, [this, s] { w->apply(s); });
  }
  bool has(const std::string& needle) { return reg.serialize().find(needle) != std::string::npos; }
};
}  // namespace

TEST_CASE("a request goes through route, attempt and relay, and is counted") {
  test::test_backend be;
  harness h(config_for({be.port()}));
  auto r = test::get(h.port(), "/echo/one");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->body.rfind("GET /echo/one HTTP/1.1\r\n", 0) == 0);
  CHECK(test::test_backend::eventually(
      [&] {
        return h.has(R"(meridian_requests_total{cluster="c",code_class="2xx",route="all"} 1)");
      },
      2000ms));
  CHECK(h.reg.endpoint_requests(0, 0) == 1);
  CHECK(h.reg.endpoint_in_flight(0, 0) == 0);
}

TEST_CASE("a refused candidate is retried on the next, and the refusal is counted") {
  std::uint16_t dead;
  {
    test::test_backend gone;
    dead = gone.port();
  }
  test::test_backend be;
  harness h(config_for({dead, be.port()}));
  for (int i = 0; i < 4; ++i) {
    auto r = test::get(h.port(), "/x");
    REQUIRE(r);
    CHECK(r->status == 200);
  }
  CHECK(h.has("kind=\"connect\"} "));
  CHECK(h.reg.endpoint_requests(0, 1) == 4);
}

TEST_CASE("a new snapshot takes effect for the next request") {
  test::test_backend a, b;
  harness h(config_for({a.port()}));
  REQUIRE(test::get(h.port(), "/x")->status == 200);
  auto cfg2 = config_for({b.port()});
  h.publish(
      std::make_shared<const proxy::snapshot>(cfg2, upstream::resolve_topology(*cfg2, h.ids)));
  CHECK(test::test_backend::eventually(
      [&] {
        auto r = test::get(h.port(), "/x");
        return r && r->status == 200 && !b.requests().empty();
      },
      2000ms));
  CHECK(a.requests().size() >= 1);
}
