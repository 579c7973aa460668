// Framing gaps and abuse found from outside, against the real gateway binary: what a client gets
// wrong in a body never reaches a backend as if it were right.
#include <doctest/doctest.h>

#include <chrono>
#include <thread>

#include "support/gateway_process.hpp"
#include "support/raw_client.hpp"
#include "support/test_backend.hpp"

using namespace test;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace {
const std::string chunked_post =
    "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n";
}  // namespace

TEST_CASE("a malformed chunked body gets 400 and no byte of it reaches a backend") {
  test_backend be;
  gateway_process gw(simple_config({be.port()}));
  const char* bodies[] = {
      "zz\r\nhello\r\n0\r\n\r\n",                      // bad chunk size
      "3\r\nhello\r\n0\r\n\r\n",                       // a chunk longer than its size
      "5\nhello\r\n0\r\n\r\n",                         // bare LF after the size
      "5;a=b\nc\r\nhello\r\n0\r\n\r\n",                // LF inside a chunk extension
      "ffffffffffffffffff\r\nx\r\n0\r\n\r\n",          // an overflowing size
      "5\r\nhello\r\n0\r\nContent-Length: 1\r\n\r\n",  // framing field in trailers
  };
  for (const char* body : bodies) {
    CAPTURE(body);
    client c(gw.port());
    c.send(chunked_post + body);
    auto r = c.read(2000ms);
    REQUIRE(r);
    CHECK(r->status == 400);
    CHECK(has(r->body, "invalid request body"));
    CHECK(c.closed(2000ms));
  }
  CHECK(be.connections() == 0);
}

TEST_CASE("a body found malformed after streaming began aborts the upstream request") {
  test_backend be;
  gateway_process gw(simple_config({be.port()}, "limits: { body_prebuffer_bytes: 1KiB }\n"));
  client c(gw.port());
  c.send(chunked_post + "800\r\n" + std::string(0x800, 'a') + "\r\n");
  // More than the prebuffer arrived: the request is on its way upstream.
  REQUIRE(test_backend::eventually([&] { return be.connections() == 1; }, 3000ms));
  c.send("zz\r\n");
  auto r = c.read(2000ms);
  REQUIRE(r);
  CHECK(r->status == 400);
  CHECK(c.closed(2000ms));
  // The backend saw its connection close before any terminating chunk.
  CHECK(test_backend::eventually([&] { return be.truncated.load() == 1; }, 3000ms));
  CHECK(be.requests().empty());
}

TEST_CASE("a chunked body over the size limit gets 413, before or while it streams") {
  test_backend be;
  gateway_process gw(
      simple_config({be.port()}, "limits: { max_body_bytes: 4KiB, body_prebuffer_bytes: 1KiB }\n"));
  client c(gw.port());
  c.send(chunked_post + "1400\r\n" + std::string(0x1400, 'x') + "\r\n");
  auto r = c.read(2000ms);
  REQUIRE(r);
  CHECK(r->status == 413);
  CHECK(be.connections() == 0);  // found in the buffered bytes: nothing went upstream
  client s(gw.port());
  s.send(chunked_post + "800\r\n" + std::string(0x800, 'x') + "\r\n");
  REQUIRE(test_backend::eventually([&] { return be.connections() == 1; }, 3000ms));
  s.send("c00\r\n" + std::string(0xc00, 'y') + "\r\n");
  r = s.read(2000ms);
  REQUIRE(r);
  CHECK(r->status == 413);
  CHECK(test_backend::eventually([&] { return be.truncated.load() == 1; }, 3000ms));
  CHECK(be.requests().empty());
}

TEST_CASE("a request target must be origin-form: a fragment is refused") {
  test_backend be;
  gateway_process gw(simple_config({be.port()}));
  for (const char* target : {"/v1/a#x", "/v1/a b", "/v1/%zz"}) {
    CAPTURE(target);
    client c(gw.port());
    c.send(std::string("GET ") + target + " HTTP/1.1\r\nHost: t\r\n\r\n");
    auto r = c.read(2000ms);
    REQUIRE(r);
    CHECK(r->status == 400);
  }
  CHECK(be.connections() == 0);
}

TEST_CASE("a client trickling its body holds no backend and meets an absolute deadline") {
  test_backend be;
  gateway_process gw(simple_config({be.port()}, "timeouts: { body: 600ms }\n"));
  client c(gw.port());
  c.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n");
  auto start = steady::now();
  std::optional<response> r;
  // A byte every 100 ms would keep a between-reads timer alive forever.
  for (int i = 0; i < 30 && !r; ++i) {
    c.send("x");
    r = c.read(100ms);
  }
  REQUIRE(r);
  CHECK(r->status == 408);
  CHECK(steady::now() - start < 2s);
  CHECK(be.connections() == 0);
}

TEST_CASE("a body slower than min_data_rate ends in 408 and frees its backend connection") {
  test_backend be;
  gateway_process gw(simple_config({be.port()},
                                   "limits: { body_prebuffer_bytes: 1KiB, min_data_rate: 1KiB }\n"
                                   "timeouts: { data_rate_window: 1s }\n"));
  // The second form of slow body: the head and more than the prebuffer at once (so a backend
  // connection is taken and the body streams), then a trickle.
  client c(gw.port());
  c.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 200000\r\n\r\n" +
         std::string(2048, 'x'));
  REQUIRE(test_backend::eventually([&] { return be.connections() == 1; }, 2000ms));
  auto start = steady::now();
  std::optional<response> r;
  for (int i = 0; i < 60 && !r; ++i) {
    c.send("x");
    r = c.read(100ms);
  }
  REQUIRE(r);
  CHECK(r->status == 408);
  CHECK(has(r->body, "request body slower than 1024 bytes/s"));
  CHECK(steady::now() - start < 3s);
  // The backend saw its connection end with the body short: nothing holds it any more.
  CHECK(test_backend::eventually([&] { return be.truncated.load() == 1; }, 2000ms));
  // A client keeping a steady 20 KB/s, far above the floor, sends its whole body.
  client ok(gw.port());
  ok.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 30000\r\n\r\n");
  for (int i = 0; i < 15; ++i) {
    ok.send(std::string(2000, 'y'));
    std::this_thread::sleep_for(100ms);  // the client's pace, not a synchronisation
  }
  r = ok.read(3000ms);
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(has(r->body, std::string(30000, 'y')));
}

TEST_CASE("the JSON model is read as a JSON parser reads it") {
  test_backend foo, other;
  std::string extra =
      "  - name: foo\n    endpoints: [ 127.0.0.1:" + std::to_string(foo.port()) +
      " ]\nroutes:\n  - { match: { path_prefix: /v1/, model: foo }, cluster: foo }\n"
      "  - { match: { path_prefix: /v1/ }, cluster: c }\n"
      "limits: { model_peek_bytes: 1KiB }\n";
  gateway_process gw(simple_config({other.port()}, extra));
  auto post = [&](const std::string& body) {
    client c(gw.port());
    c.send(
        "POST /v1/echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        "Content-Length: " +
        std::to_string(body.size()) + "\r\n\r\n" + body);
    return c.read(3000ms);
  };
  auto r = post(R"({"model":"fo\u006f","messages":[]})");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(foo.requests().size() == 1);
  r = post(R"({"model":"foo","model":"bar"})");
  REQUIRE(r);
  CHECK(r->status == 400);
  CHECK(has(r->body, "more than once"));
  // A model first named past the part read for routing cannot pick another backend.
  r = post(R"({"pad":")" + std::string(2000, 'p') + R"(","model":"foo"})");
  REQUIRE(r);
  CHECK(r->status == 400);
  CHECK(foo.requests().size() == 1);
  // Nesting past what the scanner reads hides where "model" stands (Python's json reads
  // {"x":[[...]],"model":"foo"} as model foo): refused, never sent to the default route.
  r = post(R"({"x":)" + std::string(64, '[') + std::string(64, ']') + R"(,"model":"foo"})");
  REQUIRE(r);
  CHECK(r->status == 400);
  CHECK(has(r->body, "deeper than 64"));
  // A "model" too long to be one is refused the same way.
  r = post(R"({"model":")" + std::string(300, 'm') + R"("})");
  REQUIRE(r);
  CHECK(r->status == 400);
  CHECK(foo.requests().size() == 1);
  CHECK(other.requests().empty());
}

TEST_CASE("a malformed first chunk from upstream is a 502, not an empty 200") {
  test_backend be;
  gateway_process gw(simple_config({be.port()}));
  for (const char* path : {"/bad-chunk", "/bad-chunk-late"}) {
    CAPTURE(path);
    auto r = get(gw.port(), path);
    REQUIRE(r);
    CHECK(r->status == 502);
    CHECK(has(r->body, "malformed chunked body"));
  }
  auto m = metrics_text(gw);
  CHECK(has(m, "meridian_upstream_errors_total{cluster=\"c\",endpoint=\"127.0.0.1:" +
                   std::to_string(be.port()) + "\",kind=\"protocol\"} 2"));
}

TEST_CASE("a response head held for the first body byte reaches the client intact") {
  // The head arrives alone and the body later: the gateway waits for the first body byte with
  // the head parsed in its buffer, and must pass that head on as it came, whatever it read
  // meanwhile (once, a head sent alone came out with body bytes over its reason phrase).
  test_backend be;
  gateway_process gw(simple_config({be.port()}));
  for (const char* path : {"/split", "/split-big"}) {
    CAPTURE(path);
    for (int i = 0; i < 3; ++i) {  // pooled connection reuse included
      auto r = get(gw.port(), path);
      REQUIRE(r);
      CHECK(r->status == 200);
      CHECK(r->raw_head.starts_with("HTTP/1.1 200 Fine Thanks\r\n"));
      auto value = r->headers["x-custom-header"];
      CHECK(value ==
            (std::string(path) == "/split" ? std::string("kept-intact") : std::string(30000, 'v')));
      CHECK(r->body == std::string(64, 'b'));
    }
  }
}
