#include "meridian/routing/cost.hpp"

#include <algorithm>
#include <array>
#include <cmath>

namespace meridian::routing {
namespace {
double secs(config::duration d) {
  return std::chrono::duration<double>(d).count();
}

double freshness(const upstream::probe_signals& p, double stale_after, common::time_point now) {
  if (!p.load_known) return 0;
  double age = common::seconds_between(p.scraped_at, now);
  if (age <= stale_after) return 1;
  if (age >= 2 * stale_after) return 0;
  return 1 - (age - stale_after) / stale_after;
}

// Latency history of this worker; a stream's first token when it has any, else responses.
// How long a reading takes to fade: the latency decay, doubled for each time in a row the
// endpoint was found slow again (at most 16x), so a straggler is re-tried ever more rarely.
double fade_tau(const upstream::endpoint_stats& s, double tau) {
  return tau * static_cast<double>(1u << std::min(s.slow_streak, 4u));
}

bool observed_latency(const upstream::endpoint_stats& s, double tau, common::time_point now,
                      double& out) {
  if (s.ttft.known()) {
    out = s.ttft.value(now, fade_tau(s, tau));
    return true;
  }
  if (s.response.known()) {
    out = s.response.value(now, fade_tau(s, tau));
    return true;
  }
  return false;
}
}  // namespace

cost_params cost_params::from(const config::cluster_config& c) {
  cost_params p;
  p.zone_margin = secs(c.latency.zone_margin);
  p.kv_threshold = c.latency.kv_threshold;
  p.capacity = c.latency.capacity;
  p.cold_latency = secs(c.latency.cold_latency);
  p.tau = secs(c.latency.decay);
  p.stale_after = secs(c.load_metrics.stale_after);
  return p;
}

namespace {
std::int64_t ns_of(common::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

// The per-token time an endpoint's streams showed, and the batch size they showed it at, fading
// toward its peers' as the reading ages: an engine the decode term keeps from traffic is tried
// again once it may have recovered. Level -1: nothing known.
std::pair<double, double> tpot_level(const upstream::endpoint_stats& s, const cost_params& p,
                                     common::time_point now, const peers& like) {
  if (!s.tpot.known()) return {like.tpot, like.batch};
  double own = s.tpot.value(), at = s.batch.known() ? s.batch.value() : like.batch;
  if (like.tpot <= 0) return {own, at};
  double age = std::max(0.0, common::seconds_between(s.tpot.stamp(), now));
  double w = std::exp(-age / fade_tau(s, p.tau));
  return {own * w + like.tpot * (1 - w), at * w + like.batch * (1 - w)};
}
}  // namespace

cost expected_cost(const upstream::endpoint_stats& s, const cost_params& p, common::time_point now,
                   const peers& like) {
  cost c;
  c.rtt = s.probe.rtt > 0 ? s.probe.rtt : 0;
  c.measured = observed_latency(s, p.tau, now, c.latency);
  // Never measured: like its measured peers; with none, free to try while nothing is in flight
  // and expensive once something is. A server slow to answer its probes is at least that slow.
  if (!c.measured) {
    c.latency = like.latency >= 0 ? like.latency : s.in_flight > 0 ? p.cold_latency : 0;
    c.latency = std::max(c.latency, s.probe.wait > 0 ? s.probe.wait : 0);
  }
  // Requests already waiting longer than the estimate say more than the estimate.
  if (s.awaiting_first > 0) {
    double mean_wait = (static_cast<double>(ns_of(now)) -
                        static_cast<double>(s.awaiting_since_sum_ns) / s.awaiting_first) *
                       1e-9;
    c.latency = std::max(c.latency, mean_wait - c.rtt);
  }
  double service = s.service.known() ? s.service.value() : std::max(c.latency, p.cold_latency);

  // Load: the backend's own report, moved on by what was dispatched and completed since,
  // fading into this worker's own in-flight count as the report ages.
  // "Local" is this gateway's requests: this worker's and, from their load boards, the other
  // workers' (each worker counts only its own, so without them two workers would each see an
  // endpoint the other just filled as idle).
  c.freshness = freshness(s.probe, p.stale_after, now);
  std::uint32_t others = s.board ? s.board->others(s.worker) : 0;
  double local = static_cast<double>(s.in_flight) + others;
  double waiting = s.probe.waiting > 0 ? s.probe.waiting : 0;
  double running = s.probe.running > 0 ? s.probe.running : 0;
  double since = static_cast<double>(s.dispatched - s.dispatched_at_scrape) -
                 static_cast<double>(s.completed - s.completed_at_scrape) +
                 (static_cast<double>(others) - s.others_at_scrape);
  double reported = std::max(waiting + running + since, local);
  c.outstanding = c.freshness * reported + (1 - c.freshness) * local;
  // Requests it holds count whole however far along they are: a guess at how much of an answer
  // is left (from the tokens streamed so far against a typical answer's) misleads with answers
  // of varied lengths, where counting requests (join the shortest queue) does not.
  c.load = c.outstanding;

  double cap = std::max({p.capacity, s.capacity_seen, like.capacity});
  // Past its capacity a request waits for one to finish; and, whatever the load, for the
  // prefill of the prompts sent there that have not reached their first token.
  c.queue = std::max(0.0, c.outstanding - cap) * service / cap + s.prefill_ahead;
  // What the backend reported, moved on by what was dispatched and completed since: beyond
  // its capacity requests wait. A queue reported while it runs the most it has ever been seen
  // to run, or behind a KV cache past the threshold, means it is full at the count it runs.
  // Below that, a queue is requests it admits at its next step (engines admit between steps:
  // vLLM shows one waiting for a few milliseconds at each arrival), not a wait.
  if (c.freshness > 0 && s.probe.waiting >= 0) {
    bool full = waiting > 0 && (running >= s.capacity_seen || s.probe.kv_usage > p.kv_threshold);
    double full_at = full ? std::max(1.0, running) : cap;
    double queued = std::max(0.0, waiting + running + since - full_at);
    c.queue = std::max(c.queue, c.freshness * queued * service / full_at);
  }
  if (c.freshness > 0 && s.probe.kv_usage > p.kv_threshold)
    c.kv = c.freshness * (s.probe.kv_usage - p.kv_threshold) / (1 - p.kv_threshold) * service;
  c.zone = s.local_zone ? 0 : p.zone_margin;

  // Decode: an engine runs its streams in one batch, a token each per step, and a step takes
  // longer the more streams it holds. The answer streams at the per-token time of the batch it
  // joins, and each stream already there slows by the slope for as long as they share it.
  auto [level, at] = tpot_level(s, p, now, like);
  double slope = s.decode_slope >= 0 ? s.decode_slope : std::max(0.0, like.slope);
  double tokens = like.answer_tokens;
  if (tokens > 0 && level > 0) {
    double shared = std::min(c.load, cap);
    double alone = std::max(0.1 * level, level - slope * (at - 1));
    c.decode = tokens * std::max(0.1 * level, level + slope * (shared + 1 - at));
    c.batch = tokens * slope * shared;
    c.readings += tokens * alone;
  } else {
    // No per-token figures (answers that do not stream): each request it holds slows the
    // others a little, and ties go to the less loaded.
    c.queue += c.outstanding * c.latency / cap;
  }
  c.readings += c.rtt + c.latency + c.zone;
  c.noise = s.latency_dev.of(c.latency) + (level > 0 ? tokens * s.tpot_dev.of(level) : 0);
  c.total = c.rtt + c.latency + c.queue + c.kv + c.zone + c.decode + c.batch;
  return c;
}

peers peers_of(std::span<const upstream::endpoint_stats* const> eps,
               std::span<const std::uint32_t> among, const cost_params& p, common::time_point now,
               double answer_tokens) {
  peers out;
  out.answer_tokens = answer_tokens;
  double sum = 0, lat = 0, batch = 0;
  int measured = 0;
  std::array<double, 16> tpots{}, slopes{};
  std::size_t n_tpot = 0, n_slope = 0;
  for (auto i : among) {
    const auto& s = *eps[i];
    out.capacity = std::max(out.capacity, s.capacity_seen);
    if (observed_latency(s, p.tau, now, lat)) sum += lat, ++measured;
    if (s.tpot.known() && n_tpot < tpots.size()) {
      tpots[n_tpot++] = s.tpot.value();
      batch += s.batch.known() ? s.batch.value() : 1;
    }
    if (s.decode_slope >= 0 && n_slope < slopes.size()) slopes[n_slope++] = s.decode_slope;
  }
  // Medians (the lower one of an even count): one straggler moves them little.
  auto median = [](std::array<double, 16>& v, std::size_t n) {
    auto mid = v.begin() + static_cast<std::ptrdiff_t>((n - 1) / 2);
    std::nth_element(v.begin(), mid, v.begin() + static_cast<std::ptrdiff_t>(n));
    return *mid;
  };
  if (n_tpot > 0) {
    out.tpot = median(tpots, n_tpot);
    out.batch = batch / static_cast<double>(n_tpot);
  }
  if (n_slope > 0) out.slope = median(slopes, n_slope);
  if (measured > 0) out.latency = sum / measured;
  return out;
}

double peak_ewma_cost(const upstream::endpoint_stats& s, const cost_params& p,
                      common::time_point now) {
  double lat = 0;
  bool known = observed_latency(s, p.tau, now, lat);
  double rtt = s.probe.rtt > 0 ? s.probe.rtt : 0;
  if (!known && s.in_flight > 0) return p.cold_latency * 100 * (s.in_flight + 1);
  return (lat + rtt) * (s.in_flight + 1);
}

namespace {
// A rate reading faded toward its peers' with its age, so an endpoint once measured slow is tried
// again; the times they give are blended (a harmonic mean of the rates), since a slow reading
// blended as a rate would look nearly as fast as its peers within a fraction of tau. Each reading
// that found it still slow lengthens the fade (slow_streak), so a replica that stays slow is tried
// ever more rarely.
double faded(const upstream::time_ewma& e, const upstream::endpoint_stats& s, double like,
             const cost_params& p, common::time_point now) {
  double age = std::max(0.0, common::seconds_between(e.stamp(), now));
  double w = std::exp(-age / fade_tau(s, p.tau));
  return 1 / (w / e.value() + (1 - w) / like);
}
}  // namespace

transfer_cost expected_completion(const upstream::endpoint_stats& s, const cost_params& p,
                                  common::time_point now, double bytes, const peer_rates& peers) {
  // An assumed rate while nothing is measured anywhere: only ratios between endpoints matter.
  constexpr double cold_rate = 100e6;
  transfer_cost c;
  c.rtt = s.probe.rtt > 0 ? s.probe.rtt : 0;
  double like_capacity = peers.capacity > 0 ? peers.capacity : cold_rate;
  c.measured = s.throughput.known() && s.throughput.value() > 0;
  c.capacity = c.measured ? faded(s.throughput, s, like_capacity, p, now) : like_capacity;
  // With no flow reading of its own or its peers', nothing limits a flow but the capacity.
  double like_flow = peers.flow > 0 ? peers.flow : c.capacity;
  c.flow = s.flow_rate.known() && s.flow_rate.value() > 0 ? faded(s.flow_rate, s, like_flow, p, now)
                                                          : like_flow;
  // Until transfers that shared it show more, one transfer is taken to fill it: the bytes
  // ahead share its rate (processor sharing), each counted up to this one's size.
  if (!s.aggregate_measured) c.capacity = std::min(c.capacity, c.flow);
  double ahead = std::min(s.transfer_bytes, static_cast<double>(s.in_flight) * bytes);
  // A transfer is done no sooner than its own flow allows, nor than the endpoint's capacity
  // gets through what is ahead of it and its own bytes: the tighter of the two.
  c.transfer = std::max(bytes / c.flow, (std::max(0.0, ahead) + bytes) / c.capacity);
  c.rate = c.transfer > 0 ? bytes / c.transfer : c.flow;
  c.total = c.rtt + c.transfer;
  return c;
}

namespace {
template <class Each>
peer_rates mean_rates(Each&& each) {
  peer_rates out;
  double cap = 0, flow = 0;
  int n_cap = 0, n_flow = 0;
  each([&](const upstream::endpoint_stats& s) {
    if (s.throughput.known() && s.throughput.value() > 0) cap += s.throughput.value(), ++n_cap;
    if (s.flow_rate.known() && s.flow_rate.value() > 0) flow += s.flow_rate.value(), ++n_flow;
  });
  if (n_cap) out.capacity = cap / n_cap;
  if (n_flow) out.flow = flow / n_flow;
  return out;
}
}  // namespace

peer_rates peer_rate(std::span<const upstream::endpoint_stats* const> eps,
                     std::span<const std::uint32_t> among) {
  return mean_rates([&](auto&& f) {
    for (auto i : among) f(*eps[i]);
  });
}

peer_rates peer_rate(std::span<const upstream::endpoint_stats* const> eps) {
  return mean_rates([&](auto&& f) {
    for (const auto* s : eps) f(*s);
  });
}

}  // namespace meridian::routing
