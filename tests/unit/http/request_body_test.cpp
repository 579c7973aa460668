#include "meridian/http/request_body.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace meridian::http;
using status = request_body::status;

namespace {
// Takes everything validated so far, as the connection does when it streams.
std::string take_all(request_body& b, std::string& raw) {
  std::string out;
  std::string_view spans[4];
  std::size_t n = 0;
  while (b.validated() > 0) {
    std::size_t used = b.take(raw, spans, 4, n);
    for (std::size_t i = 0; i < n; ++i) out.append(spans[i]);
    raw.erase(0, used);
    if (used == 0) break;
  }
  return out;
}
}  // namespace

TEST_CASE("a content-length body is complete when its last byte is buffered") {
  request_body b;
  b.start(body_kind::content_length, 5, 100);
  CHECK(b.validate("he") == status::more);
  CHECK(b.validated() == 2);
  CHECK(b.validate("hello and the next request") == status::complete);
  CHECK(b.validated() == 5);  // bytes past the body belong to the next request
  std::string raw = "hello and the next request";
  CHECK(take_all(b, raw) == "hello");
  CHECK(b.finished());
  CHECK(raw == " and the next request");
}

TEST_CASE("no body and an empty body are finished at once") {
  request_body b;
  b.start(body_kind::none, 0, 100);
  CHECK(b.complete());
  CHECK(b.finished());
  b.start(body_kind::content_length, 0, 100);
  CHECK(b.finished());
}

TEST_CASE("chunked bytes are checked as they arrive, in any split") {
  const std::string body = "5;x=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\nGET /next";
  for (std::size_t split = 0; split <= body.size(); ++split) {
    CAPTURE(split);
    request_body b;
    b.start(body_kind::chunked, 0, 100);
    std::string raw = body.substr(0, split);
    auto st = b.validate(raw);
    CHECK(st != status::malformed);
    std::string payload = take_all(b, raw);
    raw += body.substr(split);
    CHECK(b.validate(raw) == status::complete);
    payload += take_all(b, raw);
    CHECK(payload == "hello world");
    CHECK(b.finished());
    CHECK(raw == "GET /next");
  }
}

TEST_CASE("malformed chunked framing is found before anything is taken") {
  for (const char* bad : {"zz\r\n", "3\r\nhello\r\n", "5\nhello\r\n", "5;a=b\nc\r\nhello\r\n",
                          "ffffffffffffffffff\r\n"}) {
    CAPTURE(bad);
    request_body b;
    b.start(body_kind::chunked, 0, 1 << 20);
    CHECK(b.validate(bad) == status::malformed);
    CHECK_FALSE(b.error().empty());
  }
}

TEST_CASE("the size limit counts payload and refuses a chunk that announces too much") {
  request_body b;
  b.start(body_kind::chunked, 0, 10);
  CHECK(b.validate("5\r\nhello\r\n") == status::more);
  CHECK(b.validate("5\r\nhello\r\n6\r\n") == status::too_large);  // 11 announced, before data
  request_body c;
  c.start(body_kind::chunked, 0, 10);
  CHECK(c.validate("a\r\n0123456789\r\n0\r\n\r\n") == status::complete);
}

TEST_CASE("a whole chunked body can be decoded again for a retry") {
  std::string raw = "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
  std::string out;
  for_each_chunk(raw, [&](std::string_view d) { out.append(d); });
  for_each_chunk(raw, [&](std::string_view d) { out.append(d); });
  CHECK(out == "hello worldhello world");
}
