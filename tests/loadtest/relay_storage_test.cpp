#include <doctest/doctest.h>

#include <string>

#include "mock/mock.hpp"
#include "test_util.hpp"

using namespace meridian::loadtest;

TEST_CASE("relay adds the configured delay in each direction and is controllable at run time") {
  llm_options lo;
  lo.listen = "127.0.0.1:0";
  llm_mock backend(lo);
  const auto bport = backend.start();
  relay_options ro;
  ro.listen = "127.0.0.1:0";
  ro.to = "127.0.0.1:" + std::to_string(bport);
  ro.control = "127.0.0.1:0";
  ro.delay_ms = 30;
  relay r(ro);
  const auto rport = r.start();

  test::client c(rport, 2000);
  auto first = c.request("GET", "/static");
  REQUIRE(first.ok);
  auto timed = c.request("GET", "/static");  // keep-alive: pure request/response RTT
  REQUIRE(timed.ok);
  CHECK(timed.body == "Hello, World!");
  CHECK(timed.elapsed_ms >= 2 * 30);
  CHECK(timed.elapsed_ms < 2 * 30 + 40);

  // Change delay via the HTTP control listener.
  auto ctl = test::post(r.control_port(), "/control", R"({"delay_ms":0,"jitter_ms":0})");
  CHECK(ctl.status == 200);
  CHECK(ctl.body.find("\"delay_ms\":0") != std::string::npos);
  auto fast = c.request("GET", "/static");
  REQUIRE(fast.ok);
  CHECK(fast.elapsed_ms < 30);

  std::string err;
  CHECK(r.apply_control(R"({"delay_ms":100})", err));
  auto slow = c.request("GET", "/static");
  CHECK(slow.elapsed_ms >= 200);

  // Blackhole: bytes vanish, the client times out.
  CHECK(r.apply_control(R"({"delay_ms":0,"blackhole":true})", err));
  test::client bh(rport, 300);
  auto lost = bh.request("GET", "/static");
  CHECK_FALSE(lost.ok);
  CHECK(r.apply_control(R"({"blackhole":false})", err));

  // Reset drops every open relayed connection.
  test::client victim(rport, 2000);
  REQUIRE(victim.request("GET", "/static").ok);
  CHECK(r.apply_control(R"({"reset":true})", err));
  auto after = victim.request("GET", "/static");
  CHECK_FALSE(after.ok);
  CHECK_FALSE(r.apply_control(R"({"delay_ms":"soon"})", err));
}

TEST_CASE("storage mock: PUT/GET/HEAD/DELETE, ranges, ETag") {
  storage_options so;
  so.listen = "127.0.0.1:0";
  storage_mock s(so);
  const auto port = s.start();
  test::client c(port);
  std::string data;
  for (int i = 0; i < 1000; ++i) data += static_cast<char>('a' + i % 26);
  auto put = c.request("PUT", "/bucket/key1", data);
  CHECK(put.status == 200);
  const std::string etag = put.header("etag");
  CHECK(etag.size() > 2);
  auto get = c.request("GET", "/bucket/key1");
  CHECK(get.status == 200);
  CHECK(get.body == data);
  CHECK(get.header("etag") == etag);
  auto part = c.request("GET", "/bucket/key1", {}, "Range: bytes=10-19\r\n");
  CHECK(part.status == 206);
  CHECK(part.body == data.substr(10, 10));
  CHECK(part.header("content-range") == "bytes 10-19/1000");
  auto suffix = c.request("GET", "/bucket/key1", {}, "Range: bytes=-5\r\n");
  CHECK(suffix.body == data.substr(995));
  auto open = c.request("GET", "/bucket/key1", {}, "Range: bytes=990-\r\n");
  CHECK(open.body == data.substr(990));
  auto bad = c.request("GET", "/bucket/key1", {}, "Range: bytes=5000-6000\r\n");
  CHECK(bad.status == 416);
  CHECK(bad.header("content-range") == "bytes */1000");
  auto nm = c.request("GET", "/bucket/key1", {}, "If-None-Match: " + etag + "\r\n");
  CHECK(nm.status == 304);
  CHECK(nm.body.empty());
  auto head = c.request("HEAD", "/bucket/key1");
  CHECK(head.status == 200);
  CHECK(head.header("content-length") == "1000");
  CHECK(head.body.empty());
  CHECK(c.request("DELETE", "/bucket/key1").status == 204);
  CHECK(c.request("GET", "/bucket/key1").status == 404);
}

TEST_CASE("storage bandwidth cap slows large bodies") {
  storage_options so;
  so.listen = "127.0.0.1:0";
  so.bandwidth = 2 << 20;  // 2 MiB/s
  storage_mock s(so);
  const auto port = s.start();
  test::client c(port);
  std::string big(1 << 20, 'z');
  REQUIRE(c.request("PUT", "/b/big", big).status == 200);
  auto g = c.request("GET", "/b/big");
  CHECK(g.body.size() == big.size());
  CHECK(g.elapsed_ms >= 400);  // 1 MiB at 2 MiB/s ~ 500 ms
}
