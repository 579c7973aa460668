#include "meridian/http/headers.hpp"

#include <doctest/doctest.h>

#include <vector>

using namespace meridian::http;

TEST_CASE("the upstream request is re-framed and hop-by-hop headers are dropped") {
  std::string text =
      "POST /v1/chat HTTP/1.1\r\nHost: gw.example\r\nConnection: keep-alive, X-Hop\r\n"
      "X-Hop: secret\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nUpgrade: h2c\r\n"
      "Proxy-Authorization: x\r\nTransfer-Encoding: chunked\r\nX-Forwarded-For: 10.0.0.1\r\n"
      "X-Forwarded-For: 10.0.0.2\r\nX-Request-Id: client-id\r\ntraceparent: 00-abc-def-01\r\n"
      "Expect: 100-continue\r\nAuthorization: Bearer k\r\n\r\n";
  std::vector<header> storage(100);
  request_head req;
  parse_error err{};
  REQUIRE(parse_request(text, {}, storage, req, err) == parse_status::complete);
  std::string out;
  build_upstream_request(out, req, {"127.0.0.9", "http", "rid-1"}, out_framing::chunked, 0);
  CHECK(out.rfind("POST /v1/chat HTTP/1.1\r\nhost: gw.example\r\n", 0) == 0);
  for (const char* gone : {"X-Hop", "Keep-Alive", "TE:", "Upgrade", "Proxy-Authorization",
                           "Connection", "Expect", "X-Request-Id: client-id"})
    CHECK(out.find(gone) == std::string::npos);
  CHECK(out.find("traceparent: 00-abc-def-01\r\n") != std::string::npos);
  CHECK(out.find("Authorization: Bearer k\r\n") != std::string::npos);
  CHECK(out.find("x-forwarded-for: 10.0.0.1, 10.0.0.2, 127.0.0.9\r\n") != std::string::npos);
  CHECK(out.find("x-forwarded-proto: http\r\n") != std::string::npos);
  CHECK(out.find("x-forwarded-host: gw.example\r\n") != std::string::npos);
  CHECK(out.find("x-request-id: rid-1\r\n") != std::string::npos);
  // Exactly one framing header, ours.
  CHECK(out.find("transfer-encoding: chunked\r\n") != std::string::npos);
  CHECK(out.find("Transfer-Encoding") == std::string::npos);
  CHECK(out.find("content-length") == std::string::npos);
  CHECK(out.substr(out.size() - 4) == "\r\n\r\n");
}

TEST_CASE("the client response keeps end-to-end headers and restates framing") {
  std::string text =
      "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
      "Connection: X-Internal\r\nX-Internal: 1\r\nX-Request-Id: backend\r\n\r\n";
  std::vector<header> storage(100);
  response_head resp;
  parse_error err{};
  REQUIRE(parse_response(text, {}, storage, "GET", resp, err) == parse_status::complete);
  std::string out;
  build_downstream_response(out, resp, "rid", out_framing::chunked, 0, true, 1);
  CHECK(out.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
  CHECK(out.find("Content-Type: text/event-stream\r\n") != std::string::npos);
  CHECK(out.find("X-Internal") == std::string::npos);
  CHECK(out.find("backend") == std::string::npos);
  CHECK(out.find("x-request-id: rid\r\n") != std::string::npos);
  CHECK(out.find("transfer-encoding: chunked\r\n") != std::string::npos);
  build_downstream_response(out, resp, "rid", out_framing::close_delimited, 0, false, 0);
  CHECK(out.find("connection: close\r\n") != std::string::npos);
  CHECK(out.find("transfer-encoding") == std::string::npos);
}

TEST_CASE("local responses carry length, retry-after and close") {
  std::string out;
  build_local_response(out, 503, "application/json", "{}", false, "id", 5);
  CHECK(out ==
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: "
        "2\r\nx-request-id: id\r\nretry-after: 5\r\nconnection: close\r\n\r\n{}");
}

TEST_CASE("an HTTP/1.0 request without Host is forwarded with the upstream's name as Host") {
  std::string text = "GET /x HTTP/1.0\r\n\r\n";
  std::vector<header> storage(10);
  request_head req;
  parse_error err{};
  REQUIRE(parse_request(text, {}, storage, req, err) == parse_status::complete);
  std::string out;
  build_upstream_request(out, req, {"127.0.0.1", "http", "id", "models.internal"},
                         out_framing::none, 0);
  CHECK(out.rfind("GET /x HTTP/1.1\r\nhost: models.internal\r\n", 0) == 0);
  CHECK(out.find("x-forwarded-host") == std::string::npos);  // the client named none
  request_head again;
  CHECK(parse_request(out, {}, storage, again, err) == parse_status::complete);
  // Without a name: empty, as RFC 9112 allows.
  build_upstream_request(out, req, {"127.0.0.1", "http", "id"}, out_framing::none, 0);
  CHECK(out.rfind("GET /x HTTP/1.1\r\nhost: \r\n", 0) == 0);
}

TEST_CASE("idempotent methods are the ones RFC 9110 lets a client send again") {
  for (const char* m : {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
    CHECK(meridian::http::idempotent(m));
  for (const char* m : {"POST", "PATCH", "CONNECT", "get"})
    CHECK_FALSE(meridian::http::idempotent(m));
}
