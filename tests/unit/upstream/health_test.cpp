#include <doctest/doctest.h>

#include "meridian/upstream/cluster.hpp"
#include "meridian/upstream/signals.hpp"

using namespace meridian;
using namespace std::chrono_literals;

namespace {
std::shared_ptr<upstream::topology> topo_of(std::size_t n) {
  auto t = std::make_shared<upstream::topology>();
  auto& c = t->clusters.emplace_back();
  c.name = "c";
  c.outlier.consecutive_5xx = 3;
  c.outlier.consecutive_connect_failures = 2;
  c.outlier.consecutive_hedge_losses = 3;
  c.outlier.base_ejection = 10s;
  c.outlier.max_ejection = 25s;
  c.outlier.max_ejected_share = 0.5;
  for (std::size_t i = 0; i < n; ++i) {
    upstream::endpoint_info e;
    e.id = static_cast<upstream::endpoint_id>(i + 1);
    e.address = "127.0.0.1:" + std::to_string(1000 + i);
    e.series = std::make_shared<metrics::endpoint_series>(0, e.address, 1);
    c.endpoints.push_back(e);
  }
  return t;
}
common::time_point t0() {
  return common::time_point{} + std::chrono::hours(1);
}
}  // namespace

TEST_CASE("consecutive 5xx eject an endpoint; 4xx never do") {
  upstream::worker_upstreams ups(topo_of(4), 0);
  auto& ep = *ups.cluster(0).endpoints[0];
  for (int i = 0; i < 50; ++i) ups.record_status(ep, 400, t0());  // the client's mistakes
  CHECK(ep.stats.healthy);
  ups.record_status(ep, 503, t0());
  ups.record_status(ep, 502, t0());
  ups.record_status(ep, 200, t0());  // a 200 head alone proves nothing: the count stays
  ups.record_complete(ep);           // a whole response starts the count over
  ups.record_status(ep, 500, t0());
  ups.record_status(ep, 500, t0());
  CHECK(ep.stats.healthy);
  CHECK(ep.metrics->ejections.value() == 0);
  ups.record_status(ep, 500, t0());
  CHECK_FALSE(ep.stats.healthy);
  CHECK_FALSE(ep.stats.healthy_shared.load());
  CHECK(ep.metrics->ejections.value() == 1);  // meridian_endpoint_ejections_total
}

TEST_CASE("streams cut mid-answer eject like 5xx; only time lifts that ejection") {
  auto topo = topo_of(2);
  upstream::worker_upstreams ups(topo, 0);
  auto& ep = *ups.cluster(0).endpoints[0];
  // Every answer starts with a 200 head and is cut: the heads must not start the count over.
  for (int i = 0; i < 2; ++i) {
    ups.record_status(ep, 200, t0());
    ups.record_cut(ep, t0());
  }
  CHECK(ep.stats.healthy);
  ups.record_status(ep, 200, t0());
  ups.record_cut(ep, t0());  // the third in a row (the test cluster's consecutive_5xx)
  CHECK_FALSE(ep.stats.healthy);
  CHECK(ep.metrics->ejections.value() == 1);
  // Its probe keeps passing (it answers /health): that says nothing of its streams.
  upstream::signals s;
  s.topo = topo;
  s.clusters.assign(1, std::vector<upstream::probe_signals>(2));
  s.clusters[0][0].probed = s.clusters[0][0].healthy = true;
  s.clusters[0][0].successes = 5;
  ups.apply_signals(s);
  CHECK_FALSE(ep.stats.healthy);
  ups.refresh_health(t0() + 10s);
  CHECK(ep.stats.healthy);
  ups.record_cut(ep, t0() + 10s);  // back on trial: one more cut ejects it again, for longer
  CHECK_FALSE(ep.stats.healthy);
  ups.refresh_health(t0() + 29s);
  CHECK_FALSE(ep.stats.healthy);
}

TEST_CASE("ejections grow with each one, up to the maximum, and time lifts them") {
  upstream::worker_upstreams ups(topo_of(2), 0);
  auto& ep = *ups.cluster(0).endpoints[0];
  auto eject_at = [&](common::time_point t) {
    ups.record_connect_failure(ep, t);
    ups.record_connect_failure(ep, t);
  };
  eject_at(t0());
  CHECK_FALSE(ep.stats.healthy);
  ups.refresh_health(t0() + 9s);
  CHECK_FALSE(ep.stats.healthy);
  ups.refresh_health(t0() + 10s);
  CHECK(ep.stats.healthy);
  eject_at(t0() + 10s);  // the second ejection lasts 20 s
  ups.refresh_health(t0() + 29s);
  CHECK_FALSE(ep.stats.healthy);
  ups.refresh_health(t0() + 30s);
  CHECK(ep.stats.healthy);
  eject_at(t0() + 30s);  // the third would be 30 s: capped at 25 s
  ups.refresh_health(t0() + 55s);
  CHECK(ep.stats.healthy);
  CHECK(ep.stats.failures_total.load() == 6);
}

TEST_CASE("never more than the configured share of a cluster is ejected") {
  upstream::worker_upstreams ups(topo_of(4), 0);
  for (std::size_t i = 0; i < 4; ++i)
    for (int k = 0; k < 3; ++k) ups.record_status(*ups.cluster(0).endpoints[i], 503, t0());
  int healthy = 0;
  for (auto& ep : ups.cluster(0).endpoints) healthy += ep->stats.healthy ? 1 : 0;
  CHECK(healthy == 2);
}

TEST_CASE("a passing probe lifts an ejection; a failing probe verdict marks it unhealthy") {
  auto topo = topo_of(2);
  upstream::worker_upstreams ups(topo, 0);
  auto& ep = *ups.cluster(0).endpoints[0];
  for (int k = 0; k < 3; ++k) ups.record_status(ep, 503, t0());
  CHECK_FALSE(ep.stats.healthy);
  upstream::signals s;
  s.topo = topo;
  s.clusters.assign(1, std::vector<upstream::probe_signals>(2));
  ups.apply_signals(s);  // no probe has passed since: still ejected
  CHECK_FALSE(ep.stats.healthy);
  s.clusters[0][0].probed = true;
  s.clusters[0][0].successes = 1;
  ups.apply_signals(s);
  CHECK(ep.stats.healthy);
  s.clusters[0][1].probed = true;
  s.clusters[0][1].healthy = false;
  ups.apply_signals(s);
  CHECK_FALSE(ups.cluster(0).endpoints[1]->stats.healthy);
  // Signals built for another topology are not applied by index.
  s.topo = topo_of(2);
  s.clusters[0][1].healthy = true;
  ups.apply_signals(s);
  CHECK_FALSE(ups.cluster(0).endpoints[1]->stats.healthy);
}

TEST_CASE("hedge races lost in a row eject for slowness, which a passing probe does not lift") {
  using race = upstream::worker_upstreams::race;
  auto topo = topo_of(4);
  upstream::worker_upstreams ups(topo, 0);
  auto& ep = *ups.cluster(0).endpoints[0];
  ups.record_race(ep, race::lost, t0());
  ups.record_race(ep, race::lost, t0());
  ups.record_race(ep, race::on_time, t0());  // an answer before the deadline starts over
  ups.record_race(ep, race::lost, t0());
  ups.record_race(ep, race::lost, t0());
  CHECK(ep.stats.healthy);
  ups.record_status(ep, 200, t0());  // a late answer is no answer in time: the count stays
  ups.record_race(ep, race::lost, t0());
  CHECK_FALSE(ep.stats.healthy);
  CHECK(ep.metrics->ejections.value() == 1);
  // The probe finds it alive, and it is: but slow. Nor does a connection to it lift it.
  upstream::signals s;
  s.topo = topo;
  s.clusters.assign(1, std::vector<upstream::probe_signals>(4));
  s.clusters[0][0].probed = true;
  s.clusters[0][0].successes = 5;
  ups.apply_signals(s);
  ups.record_success(ep);
  CHECK_FALSE(ep.stats.healthy);
  ups.refresh_health(t0() + 10s);  // time does
  CHECK(ep.stats.healthy);
  ups.record_race(ep, race::lost, t0() + 10s);  // back on probation: one more loss, 20 s
  CHECK_FALSE(ep.stats.healthy);
  ups.refresh_health(t0() + 29s);
  CHECK_FALSE(ep.stats.healthy);
  ups.refresh_health(t0() + 30s);
  CHECK(ep.stats.healthy);
}

TEST_CASE("consecutive_hedge_losses 0 never ejects") {
  auto topo = topo_of(2);
  topo->clusters[0].outlier.consecutive_hedge_losses = 0;
  upstream::worker_upstreams ups(topo, 0);
  auto& ep = *ups.cluster(0).endpoints[0];
  for (int i = 0; i < 20; ++i) ups.record_race(ep, upstream::worker_upstreams::race::lost, t0());
  CHECK(ep.stats.healthy);
}

TEST_CASE("a new load reading records this worker's counts for dead reckoning") {
  auto topo = topo_of(1);
  upstream::worker_upstreams ups(topo, 0);
  auto& ep = *ups.cluster(0).endpoints[0];
  ups.request_started(ep, t0());
  ups.request_started(ep, t0());
  ups.request_finished(ep, t0(), t0() + 1s, true);
  upstream::signals s;
  s.topo = topo;
  s.clusters.assign(1, std::vector<upstream::probe_signals>(1));
  s.clusters[0][0].load_known = true;
  s.clusters[0][0].scraped_at = t0() + 1s;
  s.clusters[0][0].running = 12;
  ups.apply_signals(s);
  CHECK(ep.stats.dispatched_at_scrape == 2);
  CHECK(ep.stats.completed_at_scrape == 1);
  CHECK(ep.stats.capacity_seen == 12);
  CHECK(ep.stats.in_flight == 1);
  CHECK(ep.stats.service.known());
}

TEST_CASE("latency samples lose the probe RTT and the queueing expected at the pick") {
  auto topo = topo_of(1);
  upstream::worker_upstreams ups(topo, 0);
  auto& ep = *ups.cluster(0).endpoints[0];
  ep.stats.probe.rtt = 0.020;
  ups.observe_ttft(ep, 0.100, t0(), 0.050);
  CHECK(ep.stats.ttft.value(t0(), 10) == doctest::Approx(0.030));
  ups.observe_response(ep, 0.500, t0(), 0.100);
  CHECK(ep.stats.response.value(t0(), 10) == doctest::Approx(0.380));
  // A wait longer than the whole sample leaves nothing, never a negative latency.
  upstream::worker_upstreams fresh(topo, 0);
  auto& ep2 = *fresh.cluster(0).endpoints[0];
  fresh.observe_ttft(ep2, 0.100, t0(), 0.200);
  CHECK(ep2.stats.ttft.value(t0(), 10) == 0);
}

TEST_CASE("prefix affinity: prefill rates are learned per endpoint and pooled per cluster") {
  auto topo = topo_of(2);
  topo->clusters[0].prefix.enabled = true;
  upstream::worker_upstreams ups(topo, 0);
  auto& a = *ups.cluster(0).endpoints[0];
  auto& b = *ups.cluster(0).endpoints[1];
  // Before any rate is learned, a cold sample (uncached blocks) teaches no latency: a guessed
  // prefill taken off it would leave the guess's error in the latency.
  ups.observe_ttft(a, 0.250, t0(), 0, 100);
  CHECK_FALSE(a.stats.ttft.known());
  CHECK(a.stats.prefill_per_block < 0);
  // A short prompt's sample does, less the prior's prefill (0.5 ms a block), where that is a
  // small part of it: an engine serving short prompts is measured before any rate is learned.
  upstream::worker_upstreams other(topo, 0);
  auto& c = *other.cluster(0).endpoints[0];
  other.observe_ttft(c, 0.100, t0(), 0, 8);
  CHECK(c.stats.ttft.value(t0(), 10) == doctest::Approx(0.096));
  other.observe_ttft(*other.cluster(0).endpoints[1], 0.010, t0(), 0, 8);  // 4 of 10 ms: no
  CHECK_FALSE(other.cluster(0).endpoints[1]->stats.ttft.known());
  // Samples of 20 ms plus 2 ms per uncached block, on a: its own rate, then its latency.
  auto t = t0();
  for (int i = 0; i < 16; ++i) {
    double blocks = (i % 2) ? 0 : 100;
    ups.observe_ttft(a, 0.020 + 0.002 * blocks, t += std::chrono::milliseconds(100), 0, blocks);
  }
  CHECK(a.stats.prefill_per_block == doctest::Approx(0.002).epsilon(0.05));
  CHECK(a.stats.ttft.value(t, 10) == doctest::Approx(0.020).epsilon(0.1));
  // b has never shown a slope of its own: its first cold sample uses the cluster's pooled rate.
  ups.observe_ttft(b, 0.030 + 0.002 * 50, t, 0, 50);
  CHECK(b.stats.prefill_per_block == doctest::Approx(0.002).epsilon(0.1));
  CHECK(b.stats.ttft.value(t, 10) == doctest::Approx(0.030).epsilon(0.2));
}

TEST_CASE(
    "batching: the per-token cost of one more stream is learned from tpot against batch size") {
  auto topo = topo_of(2);
  topo->clusters[0].latency.decay = 10s;
  upstream::worker_upstreams ups(topo, 0);
  auto& a = *ups.cluster(0).endpoints[0];
  auto& b = *ups.cluster(0).endpoints[1];
  // Engine a: 3 ms a token alone, 1.5 ms more for every other stream, seen at batches 1 to 5.
  auto t = t0();
  for (int i = 0; i < 300; ++i) {
    double batch = 1 + i % 5;
    ups.observe_tpot(a, 0.003 + 0.0015 * (batch - 1), t += 100ms, 40, batch);
  }
  CHECK(a.stats.decode_slope == doctest::Approx(0.0015).epsilon(0.01));
  CHECK(a.stats.decode_slope_shared.load() == doctest::Approx(0.0015).epsilon(0.01));
  CHECK(ups.cluster(0).answer_tokens == doctest::Approx(40));
  // Its samples sit on the line: once it is learned, their deviation fades to nearly zero.
  CHECK(a.stats.tpot_dev.value() < 0.0005);
  // b has too few samples of its own: it takes the cluster's pooled slope.
  ups.observe_tpot(b, 0.006, t += 100ms, 40, 3);
  CHECK(b.stats.decode_slope == doctest::Approx(0.0015).epsilon(0.05));
  // Samples all at one batch size tell no slope.
  upstream::worker_upstreams flat(topo_of(1), 0);
  auto& c = *flat.cluster(0).endpoints[0];
  for (int i = 0; i < 40; ++i) flat.observe_tpot(c, 0.003, t += 100ms, 40, 2);
  CHECK(c.stats.decode_slope < 0);
}

TEST_CASE("storage: a transfer alone teaches the flow rate, shared ones the capacity") {
  auto topo = topo_of(2);
  topo->clusters[0].latency.decay = 10s;
  upstream::worker_upstreams ups(topo, 0);
  auto& far = *ups.cluster(0).endpoints[0];
  auto t = t0();
  // Alone it got 10 MB/s: that is all one flow gets, and (as far as is known) all it has.
  ups.observe_transfer(far, 10e6, 1, t);
  CHECK(far.stats.flow_rate.value() == doctest::Approx(10e6));
  CHECK(far.stats.throughput.value() == doctest::Approx(10e6));
  CHECK_FALSE(far.stats.aggregate_measured);
  // Four at once got 10 MB/s each: the path limits each flow, the endpoint has 40 and more.
  ups.observe_transfer(far, 10e6, 4, t += 30s);
  CHECK(far.stats.aggregate_measured);
  CHECK(far.stats.throughput.value() > 30e6);
  CHECK(far.stats.flow_rate.value() == doctest::Approx(10e6));
  // A later transfer alone does not pull the capacity down to one flow's rate.
  ups.observe_transfer(far, 10e6, 1, t += 1s);
  CHECK(far.stats.throughput.value() > 30e6);
}

TEST_CASE("storage: a replica found slow again and again is faded toward its peers ever slower") {
  upstream::worker_upstreams ups(topo_of(2), 0);
  auto& fast = *ups.cluster(0).endpoints[0];
  auto& slow = *ups.cluster(0).endpoints[1];
  ups.observe_transfer(fast, 100e6, 1, t0());
  ups.observe_transfer(slow, 10e6, 1, t0());
  CHECK(slow.stats.slow_streak == 1);
  // More samples of the same slow spell: one step (faded for 2x the decay, 20 s here).
  ups.observe_transfer(slow, 10e6, 1, t0() + 1s);
  ups.observe_transfer(slow, 10e6, 1, t0() + 2s);
  CHECK(slow.stats.slow_streak == 1);
  // Tried again after the fade and still slow: the fade doubles.
  ups.observe_transfer(slow, 10e6, 1, t0() + 20s);
  CHECK(slow.stats.slow_streak == 2);
  ups.observe_transfer(slow, 10e6, 1, t0() + 50s);
  CHECK(slow.stats.slow_streak == 3);
  CHECK(fast.stats.slow_streak == 0);
  ups.observe_transfer(slow, 90e6, 1, t0() + 60s);  // recovered
  CHECK(slow.stats.slow_streak == 0);
}

TEST_CASE("an endpoint that restarted or came back has lost its caches") {
  upstream::worker_upstreams ups(topo_of(2), 0);
  auto& ep = *ups.cluster(0).endpoints[0];
  auto signals_with = [&](std::uint32_t restarts, bool healthy) {
    upstream::signals s;
    s.topo = std::shared_ptr<const upstream::topology>(&ups.current(), [](auto*) {});
    s.clusters.resize(1);
    s.clusters[0].resize(2);
    s.clusters[0][0].restarts = restarts;
    s.clusters[0][0].healthy = healthy;
    s.clusters[0][0].probed = true;
    return s;
  };
  auto epoch = ep.stats.cache_epoch;
  ups.apply_signals(signals_with(0, true));
  CHECK(ep.stats.cache_epoch == epoch);
  ups.apply_signals(signals_with(1, true));  // its process start time changed
  CHECK(ep.stats.cache_epoch == epoch + 1);
  ups.apply_signals(signals_with(1, false));  // probes found it down
  CHECK(ep.stats.cache_epoch == epoch + 1);
  ups.apply_signals(signals_with(1, true));  // and back
  CHECK(ep.stats.cache_epoch == epoch + 2);
  // Ejected, then let back in by time.
  ups.record_connect_failure(ep, t0());
  ups.record_connect_failure(ep, t0());
  REQUIRE_FALSE(ep.stats.healthy);
  ups.refresh_health(t0() + 11s);
  CHECK(ep.stats.healthy);
  CHECK(ep.stats.cache_epoch == epoch + 3);
}
