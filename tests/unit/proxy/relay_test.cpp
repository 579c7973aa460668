// The relay's re-framing of responses for the client, through a worker in this process.
#include "proxy/relay.hpp"

#include <doctest/doctest.h>

#include "support/raw_client.hpp"
#include "support/test_backend.hpp"
#include "unit/proxy/harness.hpp"

using namespace meridian;
using namespace std::chrono_literals;

TEST_CASE("a close-delimited response is chunked for HTTP/1.1 and close-delimited for 1.0") {
  test::test_backend be;
  test::proxy_harness h(test::proxy_config({be.port()}));
  test::client c11(h.port());
  c11.send("GET /until-close HTTP/1.1\r\nHost: t\r\n\r\n");
  auto r = c11.read(3000ms);
  REQUIRE(r);
  CHECK(r->headers["transfer-encoding"] == "chunked");
  CHECK(r->body == "all of it");
  CHECK_FALSE(c11.closed(200ms));  // the client connection outlives the backend's
  test::client c10(h.port());
  c10.send("GET /until-close HTTP/1.0\r\n\r\n");
  r = c10.read(3000ms);
  REQUIRE(r);
  CHECK(r->raw_head.find("transfer-encoding") == std::string::npos);
  CHECK(r->body == "all of it");
  CHECK(c10.closed(2000ms));
}

TEST_CASE("a chunked stream is re-framed chunk by chunk and ends with its last chunk") {
  test::test_backend be;
  test::proxy_harness h(test::proxy_config({be.port()}));
  test::client c(h.port());
  c.send("GET /sse HTTP/1.1\r\nHost: t\r\n\r\n");
  auto r = c.read(5000ms);
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->headers["transfer-encoding"] == "chunked");
  for (int i = 0; i < 5; ++i)
    CHECK(r->body.find("data: {\"i\":" + std::to_string(i) + "}") != std::string::npos);
  // The connection stays usable for the next request.
  c.send("GET /x HTTP/1.1\r\nHost: t\r\n\r\n");
  r = c.read(3000ms);
  REQUIRE(r);
  CHECK(r->body == "hello");
}
