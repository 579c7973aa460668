// http::connection with a scripted handler: the server loop's own duties, without the proxy.
#include "meridian/http/connection.hpp"

#include <doctest/doctest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <thread>

#include "meridian/metrics/metrics.hpp"
#include "support/connection_server.hpp"
#include "support/raw_client.hpp"

using namespace meridian;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {
// Echoes the request's path and payload; some paths misbehave on purpose.
class echo_handler final : public http::handler {
 public:
  asio::awaitable<void> serve(http::exchange& c) override {
    ++served;
    std::string path(c.path());
    if (path == "/unread") {  // answers without reading the body
      co_await c.reply(200, "text/plain", "ignored your body");
      co_return;
    }
    if (path == "/error") {
      co_await c.reply_error(common::error_kind::upstream_unavailable, "scripted failure");
      co_return;
    }
    std::string payload;
    std::array<std::string_view, 4> spans;
    while (true) {
      std::size_t n = 0;
      auto r = co_await c.read_body(spans, n);
      if (r != http::body_result::ok) {
        auto kind = r == http::body_result::timeout ? common::error_kind::request_timeout
                                                    : common::error_kind::bad_request;
        co_await c.reply_error(kind, "bad body");
        co_return;
      }
      if (n == 0) break;
      for (std::size_t i = 0; i < n; ++i) payload.append(spans[i]);
    }
    co_await c.reply(200, "text/plain", path + ":" + payload);
  }
  void rejected(http::exchange&) override { ++rejected_count; }
  int served = 0, rejected_count = 0;
};

struct server {
  // Declared before the io_context: connections parked in it point to these when it goes.
  metrics::registry reg{metrics::layout{}, 1};
  common::random_source rng{7};
  http::connection_env env;
  echo_handler h;
  asio::io_context io{1};
  std::optional<test::connection_server> srv;

  explicit server(common::duration body_timeout = 2s) {
    env.rng = &rng;
    env.metrics = &reg.worker(0);
    env.settings.body_timeout = body_timeout;
    env.settings.max_body_bytes = 1024;
    srv.emplace(io, env, h);
  }
  std::uint16_t port() const { return srv->port(); }
};
}  // namespace

TEST_CASE("keep-alive and pipelined requests are served in order, bodies decoded") {
  server s;
  test::client c(s.port());
  c.send(
      "POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
      "POST /b HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\n"
      "GET /c HTTP/1.1\r\nHost: t\r\n\r\n");
  for (const char* want : {"/a:abc", "/b:xy", "/c:"}) {
    auto r = c.read(2000ms);
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == want);
    CHECK(r->headers["x-request-id"].size() == 32);
  }
  CHECK_FALSE(c.closed(100ms));
}

TEST_CASE("a response sent before the body was read closes the connection") {
  server s;
  test::client c(s.port());
  c.send("POST /unread HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n12345");
  auto r = c.read(2000ms);
  REQUIRE(r);
  CHECK(r->headers["connection"] == "close");
  CHECK(c.closed(2000ms));
  // A body already whole in the buffer is skipped instead, and the connection stays.
  test::client k(s.port());
  k.send("POST /unread HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n12345");
  r = k.read(2000ms);
  REQUIRE(r);
  CHECK(r->headers.count("connection") == 0);
  k.send("GET /after HTTP/1.1\r\nHost: t\r\n\r\n");
  r = k.read(2000ms);
  REQUIRE(r);
  CHECK(r->body == "/after:");
}

TEST_CASE("Expect: 100-continue is answered when the handler first reads the body") {
  server s;
  test::client c(s.port());
  c.send("POST /e HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n");
  auto interim = c.read(2000ms, true);
  REQUIRE(interim);
  CHECK(interim->status == 100);
  c.send("ok");
  auto r = c.read(2000ms);
  REQUIRE(r);
  CHECK(r->body == "/e:ok");
}

TEST_CASE("bad heads are answered by the connection and the handler only logs them") {
  server s;
  test::client c(s.port());
  c.send("GET /x HTTP/1.1\r\n\r\n");  // no Host
  auto r = c.read(2000ms);
  REQUIRE(r);
  CHECK(r->status == 400);
  CHECK(c.closed(2000ms));
  test::client big(s.port());
  big.send("POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n");
  r = big.read(2000ms);
  REQUIRE(r);
  CHECK(r->status == 413);
  CHECK(big.closed(2000ms));
}

TEST_CASE("a body that stops arriving gets 408 at its absolute deadline") {
  server s(300ms);
  test::client c(s.port());
  c.send("POST /slow HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nab");
  auto start = std::chrono::steady_clock::now();
  std::optional<test::response> r;
  for (int i = 0; i < 20 && !r; ++i) {
    c.send("c");  // steady trickle: a between-reads timer would never fire
    r = c.read(100ms);
  }
  REQUIRE(r);
  CHECK(r->status == 408);
  CHECK(std::chrono::steady_clock::now() - start < 1500ms);
  CHECK(c.closed(2000ms));
}
