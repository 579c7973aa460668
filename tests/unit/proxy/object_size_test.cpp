#include "proxy/object_size.hpp"

#include <doctest/doctest.h>

#include <array>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

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

TEST_CASE("object sizes are learnt from 200 and 206 answers; a key in a taken slot replaces it") {
  proxy::object_sizes sizes(2);
  CHECK(sizes.capacity() == 2);
  auto k1 = proxy::object_sizes::key_of(0, "h", "/a");
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
  std::uint64_t k2 = k1 ^ 1;  // the other slot
  sizes.learn(k2, "HEAD", r);
  CHECK(sizes.find(k2) == 700u);
  CHECK(sizes.find(k1) == 5000u);
  sizes.learn(k3, "DELETE", r);
  CHECK_FALSE(sizes.find(k3));
  std::uint64_t k4 = k1 + 2;  // k1's slot
  sizes.put(k4, 1);
  CHECK_FALSE(sizes.find(k1));
  CHECK(sizes.find(k4) == 1u);
  CHECK(sizes.find(k2) == 700u);
}

TEST_CASE("object sizes shared by threads never give one key's size for another") {
  proxy::object_sizes sizes(4);
  std::atomic<bool> stop{false};
  std::atomic<int> wrong{0}, found{0};
  // Each key's size is a function of the key: a torn read would break it.
  auto size_of = [](std::uint64_t k) { return k * 7 + 3; };
  std::vector<std::thread> writers;
  for (int t = 0; t < 2; ++t)
    writers.emplace_back([&, t] {
      for (std::uint64_t i = 0; i < 200000; ++i) {
        std::uint64_t k = 1 + (i * 2 + static_cast<std::uint64_t>(t)) % 64;
        sizes.put(k, size_of(k));
      }
    });
  // At least one pass after the writers are done (a busy machine may not run the reader before).
  std::thread reader([&] {
    bool last = false;
    do {
      last = stop.load();
      for (std::uint64_t k = 1; k <= 64; ++k) {
        if (auto v = sizes.find(k)) {
          found.fetch_add(1);
          if (*v != size_of(k)) wrong.fetch_add(1);
        }
      }
    } while (!last);
  });
  for (auto& w : writers) w.join();
  stop = true;
  reader.join();
  CHECK(wrong.load() == 0);
  CHECK(found.load() > 0);
}
