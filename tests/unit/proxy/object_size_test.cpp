#include "proxy/object_size.hpp"

#include <doctest/doctest.h>

#include <array>
#include <string>

using namespace meridian;
using proxy::expected_bytes;
using proxy::unknown_object_bytes;

TEST_CASE("a storage request's expected bytes come from its Range, its body or the known size") {
  CHECK(expected_bytes("GET", "bytes=0-99", std::nullopt, std::nullopt) == 100);
  CHECK(expected_bytes("GET", "bytes=-500", std::nullopt, std::nullopt) == 500);
  CHECK(expected_bytes("GET", "bytes=-500", std::nullopt, 200) == 200);
  CHECK(expected_bytes("GET", "bytes=100-", std::nullopt, 1000) == 900);
  CHECK(expected_bytes("GET", "bytes=100-", std::nullopt, std::nullopt) == unknown_object_bytes);
  CHECK(expected_bytes("GET", "bytes=900-5000", std::nullopt, 1000) == 100);
  CHECK(expected_bytes("GET", "bytes=0-1,5-6", std::nullopt, 1000) == 1000);  // multi: the object
  CHECK(expected_bytes("GET", "", std::nullopt, 1234) == 1234);
  CHECK(expected_bytes("GET", "", std::nullopt, std::nullopt) == unknown_object_bytes);
  CHECK(expected_bytes("PUT", "", 4096, std::nullopt) == 4096);
  CHECK(expected_bytes("PUT", "", std::nullopt, std::nullopt) == unknown_object_bytes);
  CHECK(expected_bytes("HEAD", "", std::nullopt, 1234) == 0);
  CHECK(expected_bytes("DELETE", "", std::nullopt, 1234) == 0);
}

TEST_CASE("object sizes are learnt from 200 and 206 answers and the oldest is forgotten first") {
  proxy::object_sizes sizes(2);
  auto k1 = proxy::object_sizes::key_of(0, "h", "/a");
  auto k2 = proxy::object_sizes::key_of(0, "h", "/b");
  auto k3 = proxy::object_sizes::key_of(1, "h", "/a");
  CHECK(k1 != k3);
  std::array<http::header, 100> h;
  http::response_head r;
  http::parse_error err{};
  std::string ranged =
      "HTTP/1.1 206 Partial\r\nContent-Length: 10\r\nContent-Range: bytes 0-9/5000\r\n\r\n";
  REQUIRE(http::parse_response(ranged, {}, h, "GET", r, err) == http::parse_status::complete);
  sizes.learn(k1, "GET", r);
  CHECK(sizes.find(k1) == 5000u);
  std::string whole = "HTTP/1.1 200 OK\r\nContent-Length: 700\r\n\r\n";
  REQUIRE(http::parse_response(whole, {}, h, "HEAD", r, err) == http::parse_status::complete);
  sizes.learn(k2, "HEAD", r);
  CHECK(sizes.find(k2) == 700u);
  sizes.learn(k3, "DELETE", r);
  CHECK_FALSE(sizes.find(k3));
  sizes.put(k3, 1);
  CHECK_FALSE(sizes.find(k1));  // the oldest made room
  CHECK(sizes.find(k2) == 700u);
  CHECK(sizes.find(k3) == 1u);
  CHECK(sizes.size() == 2);
}
