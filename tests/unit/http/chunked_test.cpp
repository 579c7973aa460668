#include "meridian/http/chunked.hpp"

#include <doctest/doctest.h>

#include <string>

using meridian::http::chunked_decoder;

namespace {
// Feeds `wire` in pieces of `piece` bytes; returns the payload or "ERROR: why".
std::string decode_all(const std::string& wire, std::size_t piece) {
  chunked_decoder d;
  std::string out;
  std::string pending;
  for (std::size_t at = 0; at < wire.size() && !d.done(); at += piece) {
    pending += wire.substr(at, piece);
    std::string_view in(pending);
    while (!in.empty() && !d.done() && !d.failed()) {
      auto st = d.decode(in);
      out.append(st.data);
      in.remove_prefix(st.consumed);
      if (st.consumed == 0) break;
    }
    if (d.failed()) return std::string("ERROR: ") + std::string(d.error());
    pending = std::string(in);
  }
  if (!d.done()) return "INCOMPLETE";
  return out;
}
}  // namespace

TEST_CASE("chunked bodies decode the same whatever the read boundaries") {
  std::string wire =
      "5\r\nhello\r\n1;name=value;q=\"a b\"\r\n \r\n6\r\nworld!\r\n0\r\nX-T: 1\r\n\r\n";
  for (std::size_t piece : {1u, 2u, 3u, 7u, 1000u}) {
    CAPTURE(piece);
    CHECK(decode_all(wire, piece) == "hello world!");
  }
}

TEST_CASE("malformed chunked bodies are refused") {
  CHECK(decode_all("g\r\nx\r\n0\r\n\r\n", 100).rfind("ERROR", 0) == 0);
  CHECK(decode_all("\r\n0\r\n\r\n", 100).rfind("ERROR", 0) == 0);
  CHECK(decode_all("10000000000000000\r\n", 100).rfind("ERROR", 0) == 0);
  CHECK(decode_all("3\r\nabcX\r\n0\r\n\r\n", 100).rfind("ERROR", 0) == 0);  // no CRLF after data
  CHECK(decode_all("3;bad\x01\r\nabc\r\n0\r\n\r\n", 100).rfind("ERROR", 0) == 0);
  CHECK(decode_all("3;a=\"x\x01\"\r\nabc\r\n0\r\n\r\n", 100).rfind("ERROR", 0) == 0);
  CHECK(decode_all("3\nabc\r\n0\r\n\r\n", 100).rfind("ERROR", 0) == 0);  // bare LF
  // Framing fields must not arrive late in trailers.
  CHECK(decode_all("0\r\nContent-Length: 5\r\n\r\n", 100).rfind("ERROR", 0) == 0);
  CHECK(decode_all("0\r\nTransfer-Encoding: chunked\r\n\r\n", 100).rfind("ERROR", 0) == 0);
  CHECK(decode_all("0\r\n folded\r\n\r\n", 100).rfind("ERROR", 0) == 0);
  CHECK(decode_all(std::string("1;") + std::string(5000, 'a') + "\r\nx\r\n0\r\n\r\n", 100)
            .rfind("ERROR", 0) == 0);
}

TEST_CASE("an empty chunked body and chunk headers for re-framing") {
  CHECK(decode_all("0\r\n\r\n", 1).empty());
  std::string h;
  meridian::http::append_chunk_header(h, 0x1a2b);
  CHECK(h == "1a2b\r\n");
  h.clear();
  meridian::http::append_chunk_header(h, 0);
  CHECK(h == "0\r\n");
}
