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
#include "unit/proxy/harness.hpp"

using namespace meridian;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

TEST_CASE("a request goes through route, attempt and relay, and is counted") {
  test::test_backend be;
  test::proxy_harness h(test::proxy_config({be.port()}));
  auto r = test::get(h.port(), "/echo/one");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->body.rfind("GET /echo/one HTTP/1.1\r\n", 0) == 0);
  CHECK(test::test_backend::eventually(
      [&] {
        return h.has(
            R"(meridian_requests_total{cluster="c",code="200",code_class="2xx",route="all"} 1)");
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
  test::proxy_harness h(test::proxy_config({dead, be.port()}));
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
  test::proxy_harness h(test::proxy_config({a.port()}));
  REQUIRE(test::get(h.port(), "/x")->status == 200);
  auto cfg2 = test::proxy_config({b.port()});
  h.publish(std::make_shared<const proxy::snapshot>(
      cfg2, upstream::resolve_topology(*cfg2, h.ids, h.reg)));
  CHECK(test::test_backend::eventually(
      [&] {
        auto r = test::get(h.port(), "/x");
        return r && r->status == 200 && !b.requests().empty();
      },
      2000ms));
  CHECK(a.requests().size() >= 1);
}
