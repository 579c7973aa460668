// The latency-aware cost model: an endpoint's expected time to first token for a new request,
// in seconds, from what the worker observed and what the probes published. Pure; used by the
// balancers on a worker thread and by /admin/endpoints on the control thread.
#pragma once

#include <cstdint>
#include <span>

#include "meridian/common/clock.hpp"
#include "meridian/config/config.hpp"
#include "meridian/upstream/stats.hpp"

namespace meridian::routing {

struct cost_params {
  double zone_margin = 0.02;
  double kv_threshold = 0.8;
  double capacity = 8;
  double cold_latency = 0.1;
  double tau = 10;         // PeakEWMA time constant
  double stale_after = 2;  // scraped readings count fully until this age, not at all at twice

  static cost_params from(const config::cluster_config& c);
};

// The terms of an endpoint's cost for one more request, in seconds: its expected time to first
// token (rtt + latency + queue + kv + zone), the time its answer then takes to stream (decode),
// and what it costs the streams already there (batch); total is their sum.
struct cost {
  double rtt = 0;      // the network path's round trip (probes' windowed minimum)
  double latency = 0;  // the backend's own time to first token (PeakEWMA), or its stall so far
  double queue = 0;    // waiting behind the requests it holds
  double kv = 0;       // KV-cache pressure near full
  double zone = 0;     // outside the gateway's zone
  // Streams: the answer's tokens at the per-token time of the batch it joins (its level read at
  // the batch size it was measured at, moved along the learned slope to the batch it would run
  // in), and the slope's toll on the streams it joins, which each decode that much slower.
  double decode = 0;
  double batch = 0;
  double total = 0;
  double outstanding = 0;  // requests it is estimated to hold (dead-reckoned between scrapes)
  // The requests it holds, counted whole: the streams the new one will share the engine with.
  double load = 0;
  // What of the total comes straight from its readings (rtt, latency, zone, the answer's
  // decode were it alone): the part whose noise makes close costs equal. The rest follows from
  // the load it holds, by the model.
  double readings = 0;
  double noise = 0;       // the spread of its readings: closer costs are not told apart
  double freshness = 0;   // weight of the scraped reading: 1 fresh, 0 stale or none
  bool measured = false;  // it has latency history on this worker
};

// What is known of the endpoints an endpoint is compared with. Until an endpoint has shown its
// own latency, per-token time or batch size it is taken to be like them: otherwise the first of
// equal endpoints to answer, or to be scraped while busy, would look cheaper and draw a burst.
struct peers {
  double latency = -1;  // mean observed latency of the measured ones; -1 when none is
  double capacity = 0;  // the most any of them was seen running at once
  double tpot = -1;     // their median time per output token; -1 while none is known
  double batch = 1;     // ... and the mean batch size it was measured at
  double slope = -1;    // their median per-token cost of one more stream; -1: none learned
  // Output tokens of a typical streamed answer (0: unknown): the decode and batch terms need it.
  double answer_tokens = 0;
};

cost expected_cost(const upstream::endpoint_stats& s, const cost_params& p, common::time_point now,
                   const peers& like = {});

// The peers of a comparison: the endpoints `among` of `eps`, for answers of `answer_tokens`.
peers peers_of(std::span<const upstream::endpoint_stats* const> eps,
               std::span<const std::uint32_t> among, const cost_params& p, common::time_point now,
               double answer_tokens = 0);

// Storage: the expected time to an object transfer's last byte on an endpoint, in seconds.
// An endpoint has two limits: what one transfer gets (a far or lossy path limits each TCP flow)
// and what all of them together get (a shared link, disk or server); a transfer is done no
// sooner than either allows.
struct transfer_cost {
  double rtt = 0;
  double transfer = 0;  // its bytes over its flow's rate, or the bytes ahead and its own over
                        // the endpoint's capacity, whichever is longer
  double rate = 0;      // the rate it gets in effect (its bytes over `transfer`)
  double flow = 0;      // bytes/s one transfer gets: its reading, fading to its peers' with age
  double capacity = 0;  // bytes/s all transfers get together, likewise
  double total = 0;
  bool measured = false;
};

// The mean readings of the endpoints a transfer's endpoint is compared with (0: none measured).
struct peer_rates {
  double flow = 0;
  double capacity = 0;
};

// `bytes`: the transfer's expected size. Transfers share an endpoint's capacity: one of s bytes
// waits for the in-flight transfers' bytes, each up to s (processor sharing), then its own. A
// reading fades toward the peers' with time constant tau, so an endpoint once measured slow is
// tried again after a while and measured afresh.
transfer_cost expected_completion(const upstream::endpoint_stats& s, const cost_params& p,
                                  common::time_point now, double bytes, const peer_rates& peers);
// The mean readings of the endpoints `among` of `eps`.
peer_rates peer_rate(std::span<const upstream::endpoint_stats* const> eps,
                     std::span<const std::uint32_t> among);
// The same over every endpoint of `eps`.
peer_rates peer_rate(std::span<const upstream::endpoint_stats* const> eps);

// Linkerd's PeakEWMA cost: latency times (requests in flight + 1); a backend with no history
// and requests in flight costs a large penalty, so it is not flooded before it answers.
double peak_ewma_cost(const upstream::endpoint_stats& s, const cost_params& p,
                      common::time_point now);

}  // namespace meridian::routing
