#include "meridian/http/parser.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace meridian::http;

namespace {
struct parsed {
  parse_status status;
  parse_error error;
  request_head head;
};

parsed req(const std::string& text, head_limits limits = {}) {
  static std::vector<header> storage(200);
  static std::string kept;  // the views in the result point here
  kept = text;
  parsed p{};
  p.status = parse_request(kept, limits, storage, p.head, p.error);
  return p;
}

parse_error req_error(const std::string& text) {
  auto p = req(text);
  CHECK(p.status == parse_status::error);
  return p.error;
}

response_head resp(const std::string& text, std::string_view method, parse_status expect,
                   parse_error* err_out = nullptr) {
  static std::vector<header> storage(200);
  response_head h;
  parse_error err{};
  CHECK(parse_response(text, {}, storage, method, h, err) == expect);
  if (err_out) *err_out = err;
  return h;
}
}  // namespace

TEST_CASE("a simple GET parses into views of the buffer") {
  std::string text = "GET /v1/models?x=1 HTTP/1.1\r\nHost: example.com\r\nX-A:  b c \r\n\r\n";
  auto p = req(text);
  REQUIRE(p.status == parse_status::complete);
  CHECK(p.head.method == "GET");
  CHECK(p.head.path == "/v1/models?x=1");
  CHECK(p.head.host == "example.com");
  CHECK(p.head.header_count == 2);
  CHECK(p.head.find("x-a") == "b c");
  CHECK(p.head.head_size == text.size());
  CHECK(p.head.body == body_kind::none);
  CHECK(p.head.keep_alive);
}

TEST_CASE("find_head_end finds the end across reads and not before") {
  std::string text = "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2";
  CHECK(find_head_end(std::string_view(text).substr(0, 20)) == 0);
  CHECK(find_head_end(text, 20) == 27);
}

TEST_CASE("content-length and chunked framing") {
  auto p = req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n");
  REQUIRE(p.status == parse_status::complete);
  CHECK(p.head.body == body_kind::content_length);
  CHECK(p.head.content_length == 12);
  // Identical duplicates (and a list of identical values) are one length.
  p = req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5, 5\r\n\r\n");
  REQUIRE(p.status == parse_status::complete);
  CHECK(p.head.content_length == 5);
  p = req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
  REQUIRE(p.status == parse_status::complete);
  CHECK(p.head.body == body_kind::chunked);
}

TEST_CASE("request smuggling vectors are refused") {
  CHECK(req_error("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: "
                  "chunked\r\n\r\n") == parse_error::content_length_and_transfer_encoding);
  CHECK(req_error("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: "
                  "5\r\n\r\n") == parse_error::content_length_and_transfer_encoding);
  CHECK(req_error("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n") ==
        parse_error::conflicting_content_length);
  CHECK(req_error("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n") ==
        parse_error::conflicting_content_length);
  CHECK(req_error("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n") ==
        parse_error::bad_content_length);
  CHECK(req_error("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n") ==
        parse_error::bad_content_length);
  CHECK(req_error("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n") ==
        parse_error::bad_content_length);
  CHECK(req_error("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n") ==
        parse_error::bad_transfer_encoding);
  CHECK(req_error("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n") ==
        parse_error::bad_transfer_encoding);
  CHECK(req_error("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
                  "chunked\r\n\r\n") == parse_error::bad_transfer_encoding);
  CHECK(req_error("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n") ==
        parse_error::bad_transfer_encoding);
  CHECK(req_error("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n") ==
        parse_error::chunked_on_http10);
}

TEST_CASE("malformed heads are refused") {
  CHECK(req_error("GET / HTTP/1.1\r\nHost: a\r\nX-Long: a\r\n b\r\n\r\n") == parse_error::obs_fold);
  CHECK(req_error("GET / HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n") == parse_error::bad_header_name);
  CHECK(req_error("GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n") == parse_error::bad_header_name);
  CHECK(req_error("GET / HTTP/1.1\r\nHost: a\r\nX(A): b\r\n\r\n") == parse_error::bad_header_name);
  CHECK(req_error("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x01\r\n\r\n") ==
        parse_error::bad_header_value);
  CHECK(req_error("GET  / HTTP/1.1\r\nHost: a\r\n\r\n") == parse_error::bad_request_line);
  CHECK(req_error("GET /\r\nHost: a\r\n\r\n") == parse_error::bad_request_line);
  CHECK(req_error("GET / HTTP/2.0\r\nHost: a\r\n\r\n") == parse_error::bad_version);
  CHECK(req_error("G@T / HTTP/1.1\r\nHost: a\r\n\r\n") == parse_error::bad_method);
  CHECK(req_error("GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n") == parse_error::bad_target);
  CHECK(req_error("GET ftp://x/ HTTP/1.1\r\nHost: a\r\n\r\n") == parse_error::bad_target);
  CHECK(req_error("GET / HTTP/1.1\nHost: a\r\n\r\n") == parse_error::bad_line_ending);
  CHECK(req_error("GET / HTTP/1.1\r\nHost: a\rX: y\r\n\r\n") == parse_error::bad_line_ending);
  CHECK(req_error("GET / HTTP/1.1\r\n\r\n") == parse_error::missing_host);
  CHECK(req_error("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n") == parse_error::duplicate_host);
}

TEST_CASE("head limits: header count and size") {
  std::string many = "GET / HTTP/1.1\r\nHost: a\r\n";
  for (int i = 0; i < 10; ++i) many += "X-" + std::to_string(i) + ": v\r\n";
  many += "\r\n";
  head_limits small{64 * 1024, 5};
  auto p = req(many, small);
  CHECK(p.status == parse_status::error);
  CHECK(p.error == parse_error::too_many_headers);
  head_limits tiny{40, 100};
  p = req("GET / HTTP/1.1\r\nHost: a\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n", tiny);
  CHECK(p.error == parse_error::head_too_large);
}

TEST_CASE("absolute-form targets give the path and the authority") {
  auto p = req("GET http://Example.com:8080/a/b?c HTTP/1.1\r\nHost: other\r\n\r\n");
  REQUIRE(p.status == parse_status::complete);
  CHECK(p.head.path == "/a/b?c");
  CHECK(p.head.host == "Example.com:8080");
}

TEST_CASE("request targets are origin-form: absolute-path and query, nothing else") {
  auto ok = [](const std::string& target) {
    auto p = req("GET " + target + " HTTP/1.1\r\nHost: a\r\n\r\n");
    return p.status == parse_status::complete && p.head.path == target;
  };
  CHECK(ok("/"));
  CHECK(ok("//a//b/"));
  CHECK(ok("/v1/a?x=1&y=%2F%2f:@!$'()*+,;=~-._/?z"));
  CHECK(ok("/a?b?c"));
  CHECK(ok("/%41%7E"));
  // A fragment is never sent (RFC 9112 §3.2.1); forwarding it lets the backend read another path.
  CHECK(req_error("GET /v1/a#x HTTP/1.1\r\nHost: a\r\n\r\n") == parse_error::bad_target);
  CHECK(req_error("GET /v1/a?q#x HTTP/1.1\r\nHost: a\r\n\r\n") == parse_error::bad_target);
  for (std::string bad : {"/a%", "/a%4", "/a%4g", "/a%%41", "/a?%zz", "/a\"b", "/a<b>", "/a{b}",
                          "/a|b", "/a\\b", "/a^b", "/a`b", "/a[0]", "/q?a[]=1"}) {
    CAPTURE(bad);
    CHECK(req_error("GET " + bad + " HTTP/1.1\r\nHost: a\r\n\r\n") == parse_error::bad_target);
  }
  // Absolute-form keeps its handling, and has no fragment either.
  auto p = req("GET http://h:1/a?b HTTP/1.1\r\nHost: h\r\n\r\n");
  REQUIRE(p.status == parse_status::complete);
  CHECK(p.head.path == "/a?b");
  CHECK(req_error("GET http://h/a#x HTTP/1.1\r\nHost: h\r\n\r\n") == parse_error::bad_target);
  CHECK(req_error("GET http://h#x HTTP/1.1\r\nHost: h\r\n\r\n") == parse_error::bad_target);
  CHECK(req_error("GET http://h/a%zz HTTP/1.1\r\nHost: h\r\n\r\n") == parse_error::bad_target);
  p = req("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
  REQUIRE(p.status == parse_status::complete);
  CHECK(p.head.path == "*");
  CHECK(req_error("GET * HTTP/1.1\r\nHost: h\r\n\r\n") == parse_error::bad_target);
}

TEST_CASE("connection management and hop-by-hop names") {
  auto p = req("GET / HTTP/1.1\r\nHost: a\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\n\r\n");
  REQUIRE(p.status == parse_status::complete);
  CHECK_FALSE(p.head.keep_alive);
  CHECK(p.head.is_hop_by_hop("x-secret"));
  CHECK(p.head.is_hop_by_hop("Keep-Alive"));
  CHECK(p.head.is_hop_by_hop("Proxy-Authorization"));
  CHECK(p.head.is_hop_by_hop("TE"));
  CHECK_FALSE(p.head.is_hop_by_hop("authorization"));
  p = req("GET / HTTP/1.0\r\n\r\n");
  REQUIRE(p.status == parse_status::complete);
  CHECK_FALSE(p.head.keep_alive);
  p = req("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  CHECK(p.head.keep_alive);
  p = req("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
  CHECK(p.head.expect_continue);
}

TEST_CASE("response framing follows RFC 9112 section 6.3") {
  auto h = resp("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "GET", parse_status::complete);
  CHECK(h.status == 200);
  CHECK(h.body == body_kind::content_length);
  CHECK(h.content_length == 5);
  h = resp("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "HEAD", parse_status::complete);
  CHECK(h.body == body_kind::none);
  h = resp("HTTP/1.1 204 No Content\r\n\r\n", "GET", parse_status::complete);
  CHECK(h.body == body_kind::none);
  h = resp("HTTP/1.1 304 Not Modified\r\n\r\n", "GET", parse_status::complete);
  CHECK(h.body == body_kind::none);
  h = resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "GET", parse_status::complete);
  CHECK(h.body == body_kind::chunked);
  CHECK(h.keep_alive);
  h = resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", "GET",
           parse_status::complete);
  CHECK(h.body == body_kind::chunked);
  CHECK_FALSE(h.keep_alive);
  h = resp("HTTP/1.1 200 OK\r\n\r\n", "GET", parse_status::complete);
  CHECK(h.body == body_kind::until_close);
  CHECK_FALSE(h.keep_alive);
  h = resp("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", "GET", parse_status::complete);
  CHECK_FALSE(h.keep_alive);
  h = resp("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", "GET", parse_status::complete);
  CHECK(h.status == 200);
  parse_error err{};
  resp("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "GET",
       parse_status::error, &err);
  CHECK(err == parse_error::conflicting_content_length);
  resp("HTTP/1.1 2x0 OK\r\n\r\n", "GET", parse_status::error, &err);
  CHECK(err == parse_error::bad_status_line);
  resp("ICY 200 OK\r\n\r\n", "GET", parse_status::error, &err);
  CHECK(err == parse_error::bad_status_line);
}
