// One attempt against the test backend, driven by a scripted handler that reports the outcome
// instead of relaying: what each kind of failure is called and whether it may be retried.
#include "proxy/attempt.hpp"

#include <doctest/doctest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <thread>

#include "meridian/common/log.hpp"
#include "meridian/http/headers.hpp"
#include "support/connection_server.hpp"
#include "support/raw_client.hpp"
#include "support/test_backend.hpp"
#include "unit/proxy/harness.hpp"

using namespace meridian;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using common::outcome_kind;

namespace {
const char* name_of(outcome_kind k) {
  switch (k) {
    case outcome_kind::ok:
      return "ok";
    case outcome_kind::connect_failed:
      return "connect_failed";
    case outcome_kind::response_timeout:
      return "response_timeout";
    case outcome_kind::reset_before_response:
      return "reset_before_response";
    case outcome_kind::bad_response:
      return "bad_response";
    case outcome_kind::pool_exhausted:
      return "pool_exhausted";
    default:
      return "other";
  }
}

class probe final : public http::handler {
 public:
  explicit probe(proxy::worker_context& w) : w_(w), at_(w) {}
  asio::awaitable<void> serve(http::exchange& c) override {
    http::build_upstream_request(head_, c.head(), {c.client_ip(), "http", c.request_id()},
                                 http::out_framing::none, 0);
    proxy::try_spec t;
    t.endpoint = w_.ups.cluster(0).endpoints[0];
    t.head = head_;
    t.timeouts = w_.snap->cfg->routes[0].timeouts;
    auto o = co_await at_.run(std::move(t), c);
    std::string report =
        common::cat(name_of(o.kind), o.retry_safe() ? " safe " : " unsafe ", o.status, ' ',
                    w_.ups.cluster(0).endpoints[0]->stats.in_flight);
    if (o.ok()) at_.finish(false);
    co_await c.reply(200, "text/plain", report);
  }
  void rejected(http::exchange&) override {}

 private:
  proxy::worker_context& w_;
  proxy::attempt at_;
  std::string head_;
};

struct attempt_server {
  std::shared_ptr<const config::gateway_config> cfg;
  upstream::identity_table ids;
  metrics::registry reg;
  common::random_source rng{9};
  http::connection_env env;
  asio::io_context io{1};
  proxy::worker_context ctx;
  probe h{ctx};
  std::optional<test::connection_server> srv;

  explicit attempt_server(std::shared_ptr<const config::gateway_config> c)
      : cfg(std::move(c)),
        reg(proxy::metrics_layout(*cfg), 1),
        ctx(io,
            std::make_shared<const proxy::snapshot>(cfg,
                                                    upstream::resolve_topology(*cfg, ids, reg)),
            reg.worker(0), 5, common::steady()) {
    env.rng = &rng;
    srv.emplace(io, env, h);
  }
  std::string ask(const std::string& path) {
    auto r = test::get(srv->port(), path);
    return r ? r->body : "no answer";
  }
};
}  // namespace

TEST_CASE("an answered attempt is ok with the backend's status; in flight counts from the pick") {
  test::test_backend be;
  attempt_server s(test::proxy_config({be.port()}));
  CHECK(s.ask("/x") == "ok unsafe 200 1");  // still in flight until the relay finishes it
}

TEST_CASE("a refused connection may be retried; a request that reached the backend may not") {
  std::uint16_t dead;
  {
    test::test_backend gone;
    dead = gone.port();
  }
  attempt_server refused(test::proxy_config({dead}));
  CHECK(refused.ask("/x") == "connect_failed safe 0 0");
  test::test_backend be;
  attempt_server s(test::proxy_config({be.port()}, "timeouts: { upstream_response: 200ms }\n"));
  CHECK(s.ask("/close") == "reset_before_response unsafe 0 0");
  CHECK(s.ask("/hang") == "response_timeout unsafe 0 0");
}
