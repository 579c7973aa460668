#include "meridian/routing/cost.hpp"

#include <doctest/doctest.h>

#include <array>
#include <cmath>

using namespace meridian;
using namespace std::chrono_literals;

namespace {
common::time_point t0() {
  return common::time_point{} + std::chrono::hours(1);
}
std::int64_t ns(common::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}
}  // namespace

TEST_CASE("the expected time to first token adds RTT, the backend's latency and the zone margin") {
  upstream::endpoint_stats s;
  routing::cost_params p;
  s.probe.rtt = 0.010;
  s.ttft.observe(0.050, t0(), p.tau);
  auto c = routing::expected_cost(s, p, t0());
  CHECK(c.measured);
  CHECK(c.rtt == doctest::Approx(0.010));
  CHECK(c.latency == doctest::Approx(0.050));
  CHECK(c.queue == 0);
  CHECK(c.total == doctest::Approx(0.060));
  s.local_zone = false;
  CHECK(routing::expected_cost(s, p, t0()).total == doctest::Approx(0.060 + p.zone_margin));
}

TEST_CASE("an endpoint with no history is free until it has requests in flight") {
  upstream::endpoint_stats s;
  routing::cost_params p;
  CHECK(routing::expected_cost(s, p, t0()).total == 0);
  s.in_flight = 2;
  auto c = routing::expected_cost(s, p, t0());
  CHECK_FALSE(c.measured);
  CHECK(c.latency == doctest::Approx(p.cold_latency));
  CHECK(c.total > p.cold_latency);
}

TEST_CASE("requests waiting longer than the estimate raise it: a stalled backend looks slow") {
  upstream::endpoint_stats s;
  routing::cost_params p;
  s.ttft.observe(0.020, t0(), p.tau);
  s.in_flight = s.awaiting_first = 2;
  s.awaiting_since_sum_ns = 2 * ns(t0());
  auto c = routing::expected_cost(s, p, t0() + 3s);
  CHECK(c.latency >= 2.9);
}

TEST_CASE("scraped load is dead-reckoned and fades as it ages") {
  upstream::endpoint_stats s;
  routing::cost_params p;
  p.stale_after = 2;
  s.ttft.observe(0.05, t0(), p.tau);
  s.service.observe(1.0, t0(), p.tau);
  s.probe.load_known = true;
  s.probe.scraped_at = t0();
  s.probe.waiting = 10;
  s.probe.running = 8;
  auto fresh = routing::expected_cost(s, p, t0());
  CHECK(fresh.freshness == 1);
  CHECK(fresh.outstanding == doctest::Approx(18));
  // 10 waiting behind 8 running that take ~1 s each: over a second of queueing.
  CHECK(fresh.queue >= 1.0);
  // Dispatched since the scrape: counted on top of the report.
  s.dispatched = 5;
  CHECK(routing::expected_cost(s, p, t0()).outstanding == doctest::Approx(23));
  // At 1.5x stale_after the report counts half; at 2x not at all (only local in flight).
  s.in_flight = 1;
  auto half = routing::expected_cost(s, p, t0() + 3s);
  CHECK(half.freshness == doctest::Approx(0.5));
  auto stale = routing::expected_cost(s, p, t0() + 4s);
  CHECK(stale.freshness == 0);
  CHECK(stale.outstanding == doctest::Approx(1));
  CHECK(stale.queue < fresh.queue);
}

TEST_CASE("a queue reported below capacity is an arrival between steps, not a wait") {
  upstream::endpoint_stats s;
  routing::cost_params p;
  s.ttft.observe(0.03, t0(), p.tau);
  s.service.observe(0.35, t0(), p.tau);
  s.probe.load_known = true;
  s.probe.scraped_at = t0();
  s.probe.running = 2;
  s.capacity_seen = 6;  // it has run six at once before
  auto idle = routing::expected_cost(s, p, t0());
  s.probe.waiting = 1;
  auto arrival = routing::expected_cost(s, p, t0());
  // One more request outstanding, no service time of waiting: well under one service time.
  CHECK(arrival.outstanding == doctest::Approx(3));
  CHECK(arrival.queue - idle.queue < 0.35 / 8);
  // The same queue behind a KV cache past the threshold: full at the two it runs.
  s.probe.kv_usage = 0.95;
  CHECK(routing::expected_cost(s, p, t0()).queue >= 0.35 / 2);
  // Or while it runs the most it has ever run (a backend with fewer slots than `capacity`).
  s.probe.kv_usage = 0;
  s.capacity_seen = 2;
  CHECK(routing::expected_cost(s, p, t0()).queue >= 0.35 / 2);
}

TEST_CASE("KV-cache use above the threshold is a rising penalty") {
  upstream::endpoint_stats s;
  routing::cost_params p;
  s.service.observe(1.0, t0(), p.tau);
  s.probe.load_known = true;
  s.probe.scraped_at = t0();
  s.probe.kv_usage = 0.5;
  CHECK(routing::expected_cost(s, p, t0()).kv == 0);
  s.probe.kv_usage = 0.9;
  double mid = routing::expected_cost(s, p, t0()).kv;
  s.probe.kv_usage = 1.0;
  double full = routing::expected_cost(s, p, t0()).kv;
  CHECK(mid > 0);
  CHECK(full > mid);
  CHECK(full == doctest::Approx(1.0));
}

TEST_CASE("peak_ewma cost is latency times in flight plus one, with a penalty for the unmeasured") {
  upstream::endpoint_stats s;
  routing::cost_params p;
  CHECK(routing::peak_ewma_cost(s, p, t0()) == 0);
  s.in_flight = 1;
  CHECK(routing::peak_ewma_cost(s, p, t0()) > 1);
  s.response.observe(0.1, t0(), p.tau);
  CHECK(routing::peak_ewma_cost(s, p, t0()) == doctest::Approx(0.2));
}

TEST_CASE("an answer is charged its tokens at the per-token time of the batch it joins") {
  routing::cost_params p;
  upstream::endpoint_stats s;
  s.ttft.observe(0.020, t0(), p.tau);
  s.service.observe(0.5, t0(), p.tau);
  s.tpot.observe(0.010, t0(), p.tau);  // measured with two streams in the batch
  s.batch.observe(2, t0(), p.tau);
  s.decode_slope = 0.002;  // each stream more adds 2 ms to every token
  routing::peers like;
  like.answer_tokens = 40;
  // Three requests there: it will share the engine with all three.
  s.in_flight = 3;
  auto c = routing::expected_cost(s, p, t0(), like);
  CHECK(c.load == doctest::Approx(3));
  CHECK(c.decode == doctest::Approx(40 * (0.010 + 0.002 * (4 - 2))));
  // Each of the three decodes 2 ms a token slower while it shares the batch.
  CHECK(c.batch == doctest::Approx(40 * 0.002 * 3));
  CHECK(c.total == doctest::Approx(0.020 + c.queue + c.decode + c.batch));
  // However far along they are, they count whole (how much of an answer is left is unknown).
  CHECK(routing::expected_cost(s, p, t0() + 250ms, like).load == doctest::Approx(3));
  // Idle, the answer decodes alone: the level less one stream's slope, and no toll.
  s.in_flight = 0;
  auto idle = routing::expected_cost(s, p, t0(), like);
  CHECK(idle.decode == doctest::Approx(40 * (0.010 - 0.002)));
  CHECK(idle.batch == 0);
  // Without a typical answer length there is no decode term: the cost is the time to first token.
  CHECK(routing::expected_cost(s, p, t0()).decode == 0);
}

TEST_CASE("an engine not yet measured decodes like its peers' median at their slope") {
  routing::cost_params p;
  upstream::endpoint_stats a, b, straggler, fresh;
  a.tpot.observe(0.008, t0(), p.tau);
  b.tpot.observe(0.010, t0(), p.tau);
  straggler.tpot.observe(0.100, t0(), p.tau);
  a.decode_slope = 0.001;
  b.decode_slope = 0.003;
  std::array<const upstream::endpoint_stats*, 4> eps{&a, &b, &straggler, &fresh};
  std::array<std::uint32_t, 4> all{0, 1, 2, 3};
  auto like = routing::peers_of(eps, all, p, t0(), 32);
  CHECK(like.tpot == doctest::Approx(0.010));  // the median: the straggler moves it little
  CHECK(like.slope == doctest::Approx(0.001));
  fresh.in_flight = 2;
  auto c = routing::expected_cost(fresh, p, t0(), like);
  CHECK(c.decode == doctest::Approx(32 * (0.010 + 0.001 * 2)));
  CHECK(routing::expected_cost(straggler, p, t0(), like).decode == doctest::Approx(32 * 0.100));
  // One reading is its own median.
  std::array<std::uint32_t, 1> one{2};
  CHECK(routing::peers_of(eps, one, p, t0(), 32).tpot == doctest::Approx(0.100));
}

TEST_CASE("a slow engine's per-token time fades toward its peers' as it ages, so it is tried again") {
  routing::cost_params p;
  upstream::endpoint_stats fast, fast2, slow;
  fast.tpot.observe(0.008, t0() + 30s, p.tau);
  fast2.tpot.observe(0.008, t0() + 30s, p.tau);
  slow.tpot.observe(0.040, t0(), p.tau);
  std::array<const upstream::endpoint_stats*, 3> eps{&fast, &fast2, &slow};
  std::array<std::uint32_t, 3> all{0, 1, 2};
  auto like = routing::peers_of(eps, all, p, t0(), 32);
  CHECK(routing::expected_cost(slow, p, t0(), like).decode == doctest::Approx(32 * 0.040));
  double w = std::exp(-1.0);
  CHECK(routing::expected_cost(slow, p, t0() + std::chrono::seconds(static_cast<int>(p.tau)), like)
            .decode == doctest::Approx(32 * (0.040 * w + 0.008 * (1 - w))));
  CHECK(routing::expected_cost(slow, p, t0() + 60s, like).decode ==
        doctest::Approx(32 * 0.008).epsilon(0.01));
}

TEST_CASE("a cost's noise is the deviation of its latency samples plus that of its tokens") {
  routing::cost_params p;
  upstream::endpoint_stats s;
  s.ttft.observe(0.030, t0(), p.tau);
  s.tpot.observe(0.002, t0(), p.tau);
  routing::peers like;
  like.answer_tokens = 20;
  // Until a few samples have shown their spread, the whole reading is in doubt.
  CHECK(routing::expected_cost(s, p, t0(), like).noise == doctest::Approx(0.030 + 20 * 0.002));
  for (int i = 0; i < 4; ++i) {
    s.latency_dev.observe(i % 2 ? -0.004 : 0.004, t0(), p.tau);
    s.tpot_dev.observe(0.0005, t0(), p.tau);
  }
  CHECK(routing::expected_cost(s, p, t0(), like).noise == doctest::Approx(0.004 + 20 * 0.0005));
}

TEST_CASE("a server slow to answer its probes is no further away: the wait is not path RTT") {
  routing::cost_params p;
  upstream::endpoint_stats s;
  s.probe.rtt = 0.001;
  s.probe.wait = 0.015;
  auto c = routing::expected_cost(s, p, t0());
  CHECK(c.rtt == doctest::Approx(0.001));
  // Unmeasured, the wait is the least its latency can be; measured, its samples say it.
  CHECK(c.latency == doctest::Approx(0.015));
  s.ttft.observe(0.005, t0(), p.tau);
  auto m = routing::expected_cost(s, p, t0());
  CHECK(m.latency == doctest::Approx(0.005));
  CHECK(m.total == doctest::Approx(0.006));
}

TEST_CASE(
    "storage: the expected completion is RTT plus the bytes ahead and its own over the rate") {
  upstream::endpoint_stats s;
  routing::cost_params p;
  s.probe.rtt = 0.01;
  s.throughput.observe(100e6, t0(), p.tau);
  auto c = routing::expected_completion(s, p, t0(), 50e6, {});
  CHECK(c.measured);
  CHECK(c.rate == doctest::Approx(100e6));
  CHECK(c.total == doctest::Approx(0.01 + 0.5));
  // Two transfers in flight with 300 MB between them: a 50 MB one waits for 50 MB of each
  // (processor sharing), then its own.
  s.in_flight = 2;
  s.transfer_bytes = 300e6;
  CHECK(routing::expected_completion(s, p, t0(), 50e6, {}).transfer == doctest::Approx(1.5));
  // Small transfers ahead count whole.
  s.transfer_bytes = 20e6;
  CHECK(routing::expected_completion(s, p, t0(), 50e6, {}).transfer == doctest::Approx(0.7));
}

TEST_CASE("storage: an unmeasured endpoint is like its peers, and a reading fades toward them") {
  upstream::endpoint_stats s;
  routing::cost_params p;  // tau 10 s
  auto c = routing::expected_completion(s, p, t0(), 10e6, {0, 50e6});
  CHECK_FALSE(c.measured);
  CHECK(c.rate == doctest::Approx(50e6));
  s.throughput.observe(5e6, t0(), p.tau);
  CHECK(routing::expected_completion(s, p, t0(), 10e6, {0, 50e6}).rate == doctest::Approx(5e6));
  // One time constant later the slow reading's time counts e^-1: a harmonic blend of the rates,
  // still well under half the peers' rate.
  auto later = routing::expected_completion(s, p, t0() + 10s, 10e6, {0, 50e6});
  double w = std::exp(-1.0);
  CHECK(later.rate == doctest::Approx(1 / (w / 5e6 + (1 - w) / 50e6)));
  CHECK(later.rate < 25e6);
  // Found slow again and again, it fades ever more slowly.
  s.slow_streak = 2;
  auto rarely = routing::expected_completion(s, p, t0() + 10s, 10e6, {0, 50e6});
  double w4 = std::exp(-0.25);
  CHECK(rarely.rate == doctest::Approx(1 / (w4 / 5e6 + (1 - w4) / 50e6)));
  std::array<upstream::endpoint_stats, 3> eps;
  eps[0].throughput.observe(10e6, t0(), p.tau);
  eps[2].throughput.observe(30e6, t0(), p.tau);
  std::array<const upstream::endpoint_stats*, 3> view{&eps[0], &eps[1], &eps[2]};
  std::array<std::uint32_t, 3> all{0, 1, 2};
  CHECK(routing::peer_rate(view, all).capacity == doctest::Approx(20e6));
  CHECK(routing::peer_rate(view, std::span(all).subspan(1, 1)).capacity == 0);
  CHECK(routing::peer_rate(view).capacity == doctest::Approx(20e6));
}

TEST_CASE("storage: a flow-limited endpoint is as slow for one transfer as for many") {
  routing::cost_params p;
  // A far replica: each transfer gets 10 MB/s, and four together got 40 MB/s.
  upstream::endpoint_stats far;
  far.flow_rate.observe(10e6, t0(), p.tau);
  far.throughput.observe(40e6, t0(), p.tau);
  far.aggregate_measured = true;
  // A near one shared by every transfer: 100 MB/s in all, and one alone gets all of it.
  upstream::endpoint_stats near;
  near.flow_rate.observe(100e6, t0(), p.tau);
  near.throughput.observe(100e6, t0(), p.tau);
  near.aggregate_measured = true;
  // Idle, the far one delivers 16 MB in 1.6 s: its flow's rate, not its capacity's 0.4 s.
  auto f = routing::expected_completion(far, p, t0(), 16e6, {});
  CHECK(f.transfer == doctest::Approx(1.6));
  CHECK(f.rate == doctest::Approx(10e6));
  // The near one with five 16 MB transfers in flight: 96 MB through 100 MB/s, under a second.
  near.in_flight = 5;
  near.transfer_bytes = 80e6;
  auto n = routing::expected_completion(near, p, t0(), 16e6, {});
  CHECK(n.transfer == doctest::Approx(0.96));
  CHECK(n.total < f.total);
  // Until shared transfers show its capacity, one transfer is taken to fill an endpoint.
  upstream::endpoint_stats fresh;
  fresh.flow_rate.observe(50e6, t0(), p.tau);
  fresh.throughput.observe(50e6, t0(), p.tau);
  fresh.in_flight = 1;
  fresh.transfer_bytes = 50e6;
  CHECK(routing::expected_completion(fresh, p, t0(), 50e6, {}).transfer == doctest::Approx(2.0));
}
