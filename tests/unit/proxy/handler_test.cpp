// The proxy handler's decisions, through a worker in this process: routes, the model read from
// the body, and what the client sees when there is nowhere to send a request.
#include "proxy/handler.hpp"

#include <doctest/doctest.h>

#include "support/raw_client.hpp"
#include "support/test_backend.hpp"
#include "unit/proxy/harness.hpp"

using namespace meridian;
using namespace std::chrono_literals;

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
