#include "proxy/object_resume.hpp"

#include <doctest/doctest.h>

#include <array>
#include <string>

#include "meridian/http/parser.hpp"

using namespace meridian;

namespace {
// Parses a response head; the text must outlive the result (it points into it).
http::response_head parse(const std::string& text, std::array<http::header, 100>& storage) {
  http::response_head r;
  http::parse_error err{};
  auto st = http::parse_response(text, {}, storage, "GET", r, err);
  REQUIRE(st == http::parse_status::complete);
  return r;
}
}  // namespace

TEST_CASE("a GET answered 200 or a single-range 206 with a strong ETag can be resumed") {
  std::array<http::header, 100> h;
  proxy::object_resume o;
  std::string ok = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nETag: \"v1\"\r\n\r\n";
  CHECK(o.begin(parse(ok, h)));
  CHECK(o.next() == 0);
  CHECK(o.last() == 999);
  o.delivered(300);
  CHECK(o.next() == 300);
  std::string part =
      "HTTP/1.1 206 Partial\r\nContent-Length: 100\r\nContent-Range: bytes 500-599/1000\r\n"
      "ETag: \"v1\"\r\n\r\n";
  CHECK(o.begin(parse(part, h)));
  CHECK(o.next() == 500);
  CHECK(o.last() == 599);
  std::string weak = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nETag: W/\"v1\"\r\n\r\n";
  CHECK_FALSE(o.begin(parse(weak, h)));
  std::string none = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
  CHECK_FALSE(o.begin(parse(none, h)));
  std::string chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nETag: \"v1\"\r\n\r\n";
  CHECK_FALSE(o.begin(parse(chunked, h)));
  std::string mismatch =
      "HTTP/1.1 206 Partial\r\nContent-Length: 10\r\nContent-Range: bytes 500-599/1000\r\n"
      "ETag: \"v1\"\r\n\r\n";
  CHECK_FALSE(o.begin(parse(mismatch, h)));
  std::string error = "HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\nETag: \"v1\"\r\n\r\n";
  CHECK_FALSE(o.begin(parse(error, h)));
}

TEST_CASE("the continuation asks for the rest of the same version and drops the client's terms") {
  std::array<http::header, 100> h;
  proxy::object_resume o;
  std::string ok = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nETag: \"v1\"\r\n\r\n";
  REQUIRE(o.begin(parse(ok, h)));
  o.delivered(250);
  std::string head =
      "GET /b/k HTTP/1.1\r\nhost: s\r\nRange: bytes=0-\r\nIf-None-Match: \"v0\"\r\n"
      "authorization: x\r\nif-modified-since: Sun\r\n\r\n";
  CHECK(o.continuation_head(head) ==
        "GET /b/k HTTP/1.1\r\nhost: s\r\nauthorization: x\r\n"
        "range: bytes=250-999\r\nif-range: \"v1\"\r\n\r\n");
}

TEST_CASE("only a 206 for exactly the rest, of the same ETag, continues the body") {
  std::array<http::header, 100> h, h2;
  proxy::object_resume o;
  std::string ok = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nETag: \"v1\"\r\n\r\n";
  REQUIRE(o.begin(parse(ok, h)));
  o.delivered(400);
  std::string why;
  std::string good =
      "HTTP/1.1 206 Partial\r\nContent-Length: 600\r\nContent-Range: bytes 400-999/1000\r\n"
      "ETag: \"v1\"\r\n\r\n";
  CHECK(o.continues(parse(good, h2), why));
  std::string other = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nETag: \"v2\"\r\n\r\n";
  CHECK_FALSE(o.continues(parse(other, h2), why));
  CHECK(why.find("another version") != std::string::npos);
  std::string wrong_range =
      "HTTP/1.1 206 Partial\r\nContent-Length: 500\r\nContent-Range: bytes 500-999/1000\r\n"
      "ETag: \"v1\"\r\n\r\n";
  CHECK_FALSE(o.continues(parse(wrong_range, h2), why));
  std::string wrong_etag =
      "HTTP/1.1 206 Partial\r\nContent-Length: 600\r\nContent-Range: bytes 400-999/1000\r\n"
      "ETag: \"v2\"\r\n\r\n";
  CHECK_FALSE(o.continues(parse(wrong_etag, h2), why));
  std::string unavailable = "HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n";
  CHECK_FALSE(o.continues(parse(unavailable, h2), why));
  CHECK(why == "it answered 503");
}

TEST_CASE("Content-Range values parse strictly") {
  std::uint64_t a = 0, b = 0;
  CHECK(proxy::parse_content_range("bytes 0-9/10", a, b));
  CHECK((a == 0 && b == 9));
  std::uint64_t total = 7;
  CHECK(proxy::parse_content_range("bytes 0-9/10", a, b, &total));
  CHECK(total == 10);
  CHECK(proxy::parse_content_range("bytes 5-9/*", a, b, &total));
  CHECK(total == 0);
  CHECK_FALSE(proxy::parse_content_range("bytes 5-10/10", a, b));
  CHECK_FALSE(proxy::parse_content_range("bytes 9-5/10", a, b));
  CHECK_FALSE(proxy::parse_content_range("bytes */10", a, b));
  CHECK_FALSE(proxy::parse_content_range("items 0-9/10", a, b));
}
