// The per-request observations, outlier ejection and probe signals of worker_upstreams.
#include <algorithm>
#include <array>
#include <cmath>
#include <optional>

#include "meridian/upstream/cluster.hpp"

namespace meridian::upstream {
namespace {
std::int64_t to_ns(common::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

// A sample found the endpoint slow (or not). The streak grows once per return from a fade (a
// slow sample more than half the current fade after the last slow one), not with every sample
// of one slow spell: an engine slow for a few seconds under load is faded for 2x, one found slow
// each time it is tried again for 2x, 4x, 8x, 16x.
void note_slow(endpoint_stats& st, bool slow, double tau, common::time_point now) {
  if (!slow) {
    st.slow_streak = 0;
    return;
  }
  double fade = tau * static_cast<double>(1u << std::min(st.slow_streak, 4u));
  double since = static_cast<double>(to_ns(now) - st.slow_at_ns) / 1e9;
  if (st.slow_streak == 0 || since > fade / 2) ++st.slow_streak;
  st.slow_at_ns = to_ns(now);
}
double seconds(config::duration d) {
  return std::chrono::duration<double>(d).count();
}

// Coming back (from an ejection, or from probes that found it down), an endpoint may have
// restarted: what it held is presumed lost.
void set_healthy(endpoint_stats& st) {
  bool h = st.probe.healthy && !st.ejected;
  if (h && !st.healthy) ++st.cache_epoch;
  st.healthy = h;
  st.healthy_shared.store(h, std::memory_order_relaxed);
}

// Latency as an idle backend would give it with the prompt cached: the probe RTT, the
// expected queueing and the prefill of uncached blocks are separate terms of the cost. The
// prefill rates (the endpoint's own and the cluster's pooled one) learn from the sample first.
// Before some rate is learned, a sample with uncached blocks teaches latency only for a short
// prompt (16 blocks at most) whose prior prefill is a small part of it (a quarter at most):
// taking a guessed prefill off a long cold prompt's sample would leave the guess's error in the
// latency (a peak, for the decay's time), while dropping every sample of short prompts (whose
// blocks vary too little to learn a rate from) would leave an engine that turns slow unmeasured.
constexpr double own_samples = 16, pooled_samples = 8;
constexpr double short_prompt_blocks = 16;
// Batch sizes must spread by half a stream (a variance of 0.25) before a slope against them
// means anything.
constexpr double min_batch_var = 0.25;

std::optional<double> unloaded(endpoint_stats& st, cluster_state& cs, double s, double queued,
                               double uncached, common::time_point now) {
  const auto& ci = *cs.info;
  double rest = s - (st.probe.rtt > 0 ? st.probe.rtt : 0) - (queued > 0 ? queued : 0);
  if (ci.prefix.enabled && uncached >= 0) {
    double tau = 6 * seconds(ci.latency.decay);
    st.prefill.observe(uncached, rest, now, tau);
    cs.prefill.observe(uncached, rest, now, tau);
    // The pooled rate gathers every endpoint's samples, so it is learned first; an endpoint's
    // own rate (mixed hardware) takes over once it has twice as many samples of its own.
    if (auto own = st.prefill.learned(own_samples))
      st.prefill_per_block = *own;
    else if (auto pooled = cs.prefill.learned(pooled_samples))
      st.prefill_per_block = *pooled;
    st.prefill_shared.store(st.prefill_per_block, std::memory_order_relaxed);
    double rate = st.prefill_per_block;
    if (rate < 0) {
      rate = seconds(ci.prefix.prefill_per_block);
      if (uncached > short_prompt_blocks || (uncached > 0 && rate * uncached > 0.25 * rest))
        return std::nullopt;
    }
    rest -= rate * uncached;
  }
  return rest > 0 ? rest : 0;
}
}  // namespace

// The mirrors have one writer (this worker): a relaxed load and store, no read-modify-write.
void worker_upstreams::request_started(endpoint_state& ep, common::time_point now, double prefill) {
  auto& st = ep.stats;
  st.prefill_ahead += prefill;
  ++st.in_flight;
  ++st.dispatched;
  ++st.awaiting_first;
  st.awaiting_since_sum_ns += to_ns(now);
  st.in_flight_shared.store(st.in_flight, std::memory_order_relaxed);
  if (st.board) st.board->publish(st.worker, st.in_flight);
  st.requests_total.store(st.requests_total.load(std::memory_order_relaxed) + 1,
                          std::memory_order_relaxed);
}

void worker_upstreams::answered(endpoint_state& ep, common::time_point picked, double prefill) {
  auto& st = ep.stats;
  st.prefill_ahead = std::max(0.0, st.prefill_ahead - prefill);
  if (st.awaiting_first == 0) return;
  --st.awaiting_first;
  st.awaiting_since_sum_ns -= to_ns(picked);
}

void worker_upstreams::request_finished(endpoint_state& ep, common::time_point picked,
                                        common::time_point now, bool complete) {
  auto& st = ep.stats;
  --st.in_flight;
  ++st.completed;
  st.in_flight_shared.store(st.in_flight, std::memory_order_relaxed);
  if (st.board) st.board->publish(st.worker, st.in_flight);
  if (complete)
    st.service.observe(common::seconds_between(picked, now), now,
                       seconds(cluster_of(ep).info->latency.decay));
}

void worker_upstreams::observe_ttft(endpoint_state& ep, double s, common::time_point now,
                                    double queued, double uncached) {
  auto& st = ep.stats;
  const auto& ci = *cluster_of(ep).info;
  double tau = seconds(ci.latency.decay);
  if (auto v = unloaded(st, cluster_of(ep), s, queued, uncached, now)) {
    if (st.ttft.known()) st.latency_dev.observe(*v - st.ttft.value(now, tau), now, tau);
    st.ttft.observe(*v, now, tau);
  }
  st.ttft_shared.store(st.ttft.value(now, tau), std::memory_order_relaxed);
}

void worker_upstreams::observe_response(endpoint_state& ep, double s, common::time_point now,
                                        double queued, double uncached) {
  auto& st = ep.stats;
  const auto& ci = *cluster_of(ep).info;
  double tau = seconds(ci.latency.decay);
  if (auto v = unloaded(st, cluster_of(ep), s, queued, uncached, now)) {
    if (st.response.known()) st.latency_dev.observe(*v - st.response.value(now, tau), now, tau);
    st.response.observe(*v, now, tau);
  }
  st.response_shared.store(st.response.value(now, tau), std::memory_order_relaxed);
}

void worker_upstreams::observe_tpot(endpoint_state& ep, double s, common::time_point now,
                                    std::size_t tokens, double batch) {
  auto& cs = cluster_of(ep);
  if (tokens > 0) {
    auto t = static_cast<double>(tokens);
    cs.answer_tokens = cs.answer_tokens > 0 ? 0.9 * cs.answer_tokens + 0.1 * t : t;
  }
  auto& st = ep.stats;
  double tau = seconds(cs.info->latency.decay);
  // Found decoding over twice as slowly as the median of its peers again: re-tried more rarely.
  std::array<double, 16> others{};
  std::size_t n = 0;
  for (const auto* o : cs.stats_view)
    if (o != &st && o->tpot.known() && n < others.size()) others[n++] = o->tpot.value();
  if (n > 0) {
    auto mid = others.begin() + static_cast<std::ptrdiff_t>((n - 1) / 2);
    std::nth_element(others.begin(), mid, others.begin() + static_cast<std::ptrdiff_t>(n));
    note_slow(st, s > 2 * *mid, tau, now);
  }
  if (batch > 0) {
    if (st.tpot.known()) {
      double expected =
          st.tpot.value() + std::max(0.0, st.decode_slope) * (batch - st.batch.value());
      st.tpot_dev.observe(s - expected, now, tau);
    }
    // The slope is a property of the engine and its hardware: learned over a longer memory than
    // the level, which follows a straggler at once.
    st.batch_fit.observe(batch, s, now, 6 * tau);
    cs.batch_fit.observe(batch, s, now, 6 * tau);
    if (auto own = st.batch_fit.slope(own_samples, min_batch_var))
      st.decode_slope = *own;
    else if (auto pooled = cs.batch_fit.slope(pooled_samples, min_batch_var))
      st.decode_slope = *pooled;
    st.decode_slope_shared.store(st.decode_slope, std::memory_order_relaxed);
    st.batch.observe(batch, now, tau);
  }
  st.tpot.observe(s, now, tau);
  st.tpot_shared.store(st.tpot.value(), std::memory_order_relaxed);
}

void worker_upstreams::observe_transfer(endpoint_state& ep, double rate, double sharing,
                                        common::time_point now) {
  auto& st = ep.stats;
  auto& cs = cluster_of(ep);
  double tau = seconds(cs.info->latency.decay);
  // Measured slow again (under half of what its peers' flows get): it will be tried more rarely.
  double peers = 0;
  int n = 0;
  for (const auto* s : cs.stats_view)
    if (s != &st && s->flow_rate.known()) peers += s->flow_rate.value(), ++n;
  if (n > 0) note_slow(st, rate < 0.5 * peers / n, tau, now);
  if (sharing < 1.5) {
    // Alone: what one flow gets. It shows the capacity only while no shared transfer has shown
    // more (a flow-limited path hides the rest).
    st.flow_rate.observe(rate, now, tau);
    if (!st.aggregate_measured || rate >= st.throughput.value())
      st.throughput.observe(rate, now, tau);
  } else {
    st.throughput.observe(rate * sharing, now, tau);
    st.aggregate_measured = true;
    // A flow that shared the endpoint got at least this much.
    if (!st.flow_rate.known() || rate > st.flow_rate.value()) st.flow_rate.observe(rate, now, tau);
  }
  st.throughput_shared.store(st.throughput.value(), std::memory_order_relaxed);
  st.flow_rate_shared.store(st.flow_rate.value(), std::memory_order_relaxed);
}

// ---- outlier ejection --------------------------------------------------------------------------

void worker_upstreams::eject(cluster_state& cs, endpoint_state& ep, common::time_point now,
                             ejection_cause why) {
  auto& st = ep.stats;
  if (st.ejected) return;
  const auto& o = cs.info->outlier;
  std::size_t ejected = 0;
  for (auto* s : cs.stats_view) ejected += s->ejected ? 1 : 0;
  std::size_t n = cs.stats_view.size();
  auto allowed = static_cast<std::size_t>(std::floor(o.max_ejected_share * static_cast<double>(n)));
  if (ejected >= std::max<std::size_t>(allowed, 1)) return;
  ++st.ejections;
  if (ep.metrics) ep.metrics->ejections.inc();
  auto span = std::min(o.base_ejection * st.ejections, o.max_ejection);
  st.ejected = true;
  st.ejected_for_time = why == ejection_cause::hedge_losses || why == ejection_cause::cut_streams;
  st.ejected_until_ns = to_ns(now + span);
  st.successes_at_ejection = st.probe.successes;
  set_healthy(st);
  std::string cause;
  switch (why) {
    case ejection_cause::connect_failures:
      cause = common::cat(st.consecutive_failures, " connect failures");
      break;
    case ejection_cause::responses_5xx:
      cause = common::cat(st.consecutive_5xx, " 5xx responses or cut streams");
      break;
    case ejection_cause::cut_streams:
      cause = common::cat(st.consecutive_5xx, " 5xx responses or cut streams, the last cut,");
      break;
    case ejection_cause::hedge_losses:
      cause = common::cat(st.consecutive_hedge_losses, " hedge races lost");
      break;
  }
  common::log(common::log_level::warn, "upstream",
              common::cat("endpoint ", ep.info->address, " of cluster ", cs.info->name,
                          " ejected by worker ", worker_, " for ",
                          std::chrono::duration_cast<std::chrono::seconds>(span).count(),
                          " s: ", cause, " in a row"));
}

void worker_upstreams::record_connect_failure(endpoint_state& ep, common::time_point now) {
  auto& st = ep.stats;
  st.failures_total.store(st.failures_total.load(std::memory_order_relaxed) + 1,
                          std::memory_order_relaxed);
  unsigned limit = cluster_of(ep).info->outlier.consecutive_connect_failures;
  if (++st.consecutive_failures >= limit && limit > 0)
    eject(cluster_of(ep), ep, now, ejection_cause::connect_failures);
}

void worker_upstreams::record_success(endpoint_state& ep) {
  auto& st = ep.stats;
  st.consecutive_failures = 0;
  if (st.ejected && !st.ejected_for_time) {  // reached in panic mode, and it answered
    st.ejected = false;
    set_healthy(st);
  }
}

void worker_upstreams::record_status(endpoint_state& ep, int status, common::time_point now) {
  if (status < 500) return;  // counted as a success once the whole response is through
  auto& st = ep.stats;
  unsigned limit = cluster_of(ep).info->outlier.consecutive_5xx;
  if (++st.consecutive_5xx >= limit && limit > 0)
    eject(cluster_of(ep), ep, now, ejection_cause::responses_5xx);
}

void worker_upstreams::record_complete(endpoint_state& ep) {
  ep.stats.consecutive_5xx = 0;
}

void worker_upstreams::record_cut(endpoint_state& ep, common::time_point now) {
  auto& st = ep.stats;
  unsigned limit = cluster_of(ep).info->outlier.consecutive_5xx;
  if (++st.consecutive_5xx >= limit && limit > 0)
    eject(cluster_of(ep), ep, now, ejection_cause::cut_streams);
}

void worker_upstreams::record_race(endpoint_state& ep, race r, common::time_point now) {
  auto& st = ep.stats;
  if (r == race::on_time) {
    st.consecutive_hedge_losses = 0;
    return;
  }
  unsigned limit = cluster_of(ep).info->outlier.consecutive_hedge_losses;
  if (++st.consecutive_hedge_losses >= limit && limit > 0)
    eject(cluster_of(ep), ep, now, ejection_cause::hedge_losses);
}

void worker_upstreams::refresh_health(common::time_point now) {
  auto t = to_ns(now);
  for (auto& cs : clusters_) {
    auto forget = cs.info->outlier.max_ejection;
    for (auto& ep : cs.endpoints) {
      auto& st = ep->stats;
      if (st.ejected && st.ejected_until_ns <= t) {
        // Traffic tries it again; one more failure ejects it at once, for longer.
        st.ejected = false;
        st.consecutive_failures = st.consecutive_failures > 0 ? st.consecutive_failures - 1 : 0;
        st.consecutive_5xx = st.consecutive_5xx > 0 ? st.consecutive_5xx - 1 : 0;
        if (st.consecutive_hedge_losses > 0) --st.consecutive_hedge_losses;
        st.ejected_for_time = false;
        set_healthy(st);
      } else if (!st.ejected && st.ejections > 0 &&
                 st.ejected_until_ns + to_ns(common::time_point{} + forget) <= t) {
        st.ejections = 0;  // well behaved for a whole max_ejection: start over
      }
    }
  }
}

// ---- probe signals -----------------------------------------------------------------------------

void worker_upstreams::apply_signals(const signals& s) {
  if (s.topo != topo_) return;  // built for another topology: the next one will match
  for (std::size_t c = 0; c < clusters_.size() && c < s.clusters.size(); ++c) {
    auto& cs = clusters_[c];
    const auto& sc = s.clusters[c];
    for (std::size_t e = 0; e < cs.endpoints.size() && e < sc.size(); ++e) {
      auto& st = cs.endpoints[e]->stats;
      const auto& in = sc[e];
      if (in.scraped_at != st.probe.scraped_at) {
        st.dispatched_at_scrape = st.dispatched;
        st.completed_at_scrape = st.completed;
        st.others_at_scrape = st.board ? st.board->others(st.worker) : 0;
        if (in.running > st.capacity_seen) st.capacity_seen = in.running;
      }
      if (in.restarts != st.probe.restarts) ++st.cache_epoch;
      bool went_down = in.probed && !in.healthy && st.probe.healthy;
      st.probe = in;
      if (went_down) {
        // Frozen or gone: what waits on it would wait out its deadline (first_byte: minutes).
        // Each watcher only shuts its socket down here; none leaves the list during the walk.
        std::size_t n = 0;
        for (auto& w : cs.endpoints[e]->watchers) {
          w.endpoint_down();
          ++n;
        }
        if (n > 0)
          common::log(common::log_level::warn, "upstream",
                      common::cat("endpoint ", cs.endpoints[e]->info->address, " of cluster ",
                                  cs.info->name, " found down by its probes: ", n,
                                  " requests in flight on worker ", worker_, " given up"));
      }
      if (st.ejected && !st.ejected_for_time && in.probed && in.healthy &&
          in.successes > st.successes_at_ejection) {
        st.ejected = false;
        st.consecutive_failures = st.consecutive_5xx = 0;
      }
      set_healthy(st);
    }
  }
}

}  // namespace meridian::upstream
