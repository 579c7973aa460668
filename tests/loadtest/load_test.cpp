#include <doctest/doctest.h>

#include <thread>

#include "load/load.hpp"
#include "load/report.hpp"
#include "mock/mock.hpp"

using namespace meridian::loadtest;

namespace {
load_config static_run(std::uint16_t port, double rate, double dur) {
  load_config c;
  c.url = "http://127.0.0.1:" + std::to_string(port) + "/static";
  c.rate = rate;
  c.duration_s = dur;
  c.arrival = arrival_kind::constant;
  c.connections = 4;
  c.quiet = true;
  c.progress = 0;
  REQUIRE(c.finalize().empty());
  return c;
}
}  // namespace

TEST_CASE(
    "coordinated omission: a 300 ms freeze shows in p99 when measured from intended send times") {
  llm_options o;
  o.listen = "127.0.0.1:0";
  llm_mock m(o);
  const auto port = m.start();

  auto baseline = run_load(static_run(port, 200, 1.0));
  CHECK(baseline.completed == 200);
  CHECK(baseline.e2el.percentile(99) < 50'000'000);

  auto cfg = static_run(port, 200, 1.0);
  // The freeze is injected from another thread partway through the run (an event, not a sync
  // point).
  std::thread freezer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    std::string err;
    m.apply_control(R"({"stall_ms":300})", err);
  });
  auto s = run_load(cfg);
  freezer.join();
  CHECK(s.completed == 200);
  CHECK(s.failed == 0);
  // ~60 of 200 requests were due during the freeze; measured from their intended send times, p90
  // and p99 show it. Timed from the actual send (no CO correction) only the 4 requests in flight
  // look slow, so p90 stays sub-millisecond (checked by hand: this test fails on p90 without the
  // correction).
  const double p99_ms = static_cast<double>(s.e2el.percentile(99)) / 1e6;
  const double p90_ms = static_cast<double>(s.e2el.percentile(90)) / 1e6;
  CHECK(p99_ms >= 200);
  CHECK(p90_ms >= 50);
  CHECK(s.e2el.percentile(50) < 50'000'000);
  CHECK(s.late > 40);  // requests that could not go out on time (all 4 connections stuck)
}

TEST_CASE("open loop stream run records TTFT, ITL, TPOT, tokens and per-backend shares") {
  llm_options o;
  o.listen = "127.0.0.1:0";
  o.engine.decode_ms = 3;
  o.engine.slots = 8;
  o.name = "engine-a";
  llm_mock m(o);
  const auto port = m.start();
  load_config c;
  c.url = "http://127.0.0.1:" + std::to_string(port) + "/";
  c.api = openai_api::chat;
  c.stream = true;
  c.rate = 40;
  c.duration_s = 1;
  c.max_tokens = *int_dist::parse("fixed:8");
  c.prompt_tokens = *int_dist::parse("uniform:32:64");
  c.connections = 16;
  c.quiet = true;
  c.progress = 0;
  c.slo_text = "ttft_p99<=1s,tpot_p99<=50ms";
  c.csv_path = "/dev/null";
  REQUIRE(c.finalize().empty());
  auto s = run_load(c);
  CHECK(s.failed == 0);
  CHECK(s.completed >= 30);
  CHECK(s.output_tokens == s.completed * 8);
  CHECK(s.itl.count() == s.completed * 7);
  CHECK(s.tpot.count() == s.completed);
  CHECK(s.tpot.mean() / 1e6 == doctest::Approx(3).epsilon(0.6));
  CHECK(s.ttft.count() == s.completed);
  CHECK(s.input_tokens >= s.completed * 32);
  CHECK(s.good == s.completed);
  CHECK(s.slo_pass);
  REQUIRE(s.per_backend.size() == 1);
  CHECK(s.per_backend[0].first == "engine-a");
  CHECK(s.per_backend[0].second == s.completed);
  CHECK(s.records.size() == s.completed);
}

TEST_CASE("the report gives each backend its own latencies, from its successful requests") {
  run_summary s;
  s.per_backend = {{"a", 3}, {"b", 2}};
  s.backend_names = {"a", "b"};
  auto rec = [](std::uint16_t backend, float e2el, float ttft, std::uint16_t status = 200) {
    return request_record{0, 0, ttft, e2el, status, backend, 1,
                          static_cast<std::uint8_t>(status == 200 ? 0 : 1)};
  };
  s.records = {rec(0, 10, 2), rec(0, 20, 4), rec(0, 30, 6), rec(1, 100, -1), rec(1, 900, -1, 503)};
  auto lat = backend_latencies(s);
  REQUIRE(lat.size() == 2);
  CHECK(lat[0].e2el_p50 == doctest::Approx(20));
  CHECK(lat[0].e2el_p99 == doctest::Approx(30));
  CHECK(lat[0].ttft_p50 == doctest::Approx(4));
  CHECK(lat[1].e2el_p50 == doctest::Approx(100));  // the 503 is not a latency
  CHECK(lat[1].ttft_p50 == -1);                    // no stream: no time to first token
}
