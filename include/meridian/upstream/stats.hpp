// Per-worker, per-endpoint live numbers that balancers read: what this worker observed (PeakEWMA
// of time to first token and of response time, per-token time, requests in flight counted from
// the pick, outlier state) and the last probe signals the control thread published. Owned and
// written by one worker thread; other threads only read the atomic mirrors (admin, metrics).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <utility>

#include "meridian/upstream/estimator.hpp"
#include "meridian/upstream/signals.hpp"

namespace meridian::upstream {

// What each worker has in flight on one endpoint, for the other workers' picks: a slot per worker,
// each written by its worker alone (relaxed stores of its own counts) on a cache line of its own,
// and read by the others. One board per endpoint identity, kept across reloads.
class load_board {
 public:
  explicit load_board(unsigned workers)
      : slots_(std::make_unique<slot[]>(workers ? workers : 1)), n_(workers ? workers : 1) {}
  void publish(unsigned worker, std::uint32_t in_flight) {
    if (worker < n_) slots_[worker].in_flight.store(in_flight, std::memory_order_relaxed);
  }
  // The other workers' requests in flight.
  std::uint32_t others(unsigned worker) const {
    std::uint32_t n = 0;
    for (unsigned w = 0; w < n_; ++w)
      if (w != worker) n += slots_[w].in_flight.load(std::memory_order_relaxed);
    return n;
  }

 private:
  struct alignas(64) slot {
    std::atomic<std::uint32_t> in_flight{0};
  };
  std::unique_ptr<slot[]> slots_;
  unsigned n_;
};

struct endpoint_stats {
  std::uint32_t in_flight = 0;  // requests picked and not yet finished, on this worker
  bool healthy = true;          // probe verdict and not ejected: what balancers may pick
  bool ejected = false;
  bool local_zone = true;                  // in the gateway's zone (or no zone configured)
  std::uint32_t consecutive_failures = 0;  // connect failures
  std::uint32_t consecutive_5xx = 0;       // 5xx responses and cut streams, with no whole response
  std::uint32_t consecutive_hedge_losses = 0;  // hedge races its overdue try lost, in a row
  bool ejected_for_time = false;      // for slowness or cut streams: only time lifts it, no probe
  std::uint32_t ejections = 0;        // how often; each ejection lasts longer
  std::int64_t ejected_until_ns = 0;  // steady clock
  std::uint64_t successes_at_ejection = 0;
  // Bumped when the endpoint has lost its caches: it restarted, or came back after an ejection
  // or after probes found it down. The worker tells its balancer once per change (seen).
  std::uint32_t cache_epoch = 0, cache_epoch_seen = 0;

  // Observed on this worker.
  peak_ewma ttft;      // streams: first SSE data event, less the probe RTT
  peak_ewma response;  // non-streaming: the whole response, less the probe RTT
  time_ewma tpot;      // streams: seconds per output token (gaps over 2x a stream's usual left out)
  // Batching: engines decode every running stream in one step, so the time per token grows with
  // the streams sharing the batch. `batch` is the mean batch size of the samples `tpot` holds;
  // `batch_fit` the time per token against batch size, whose slope (own, else the cluster's
  // pooled one; -1: neither) is what one more stream costs each token.
  time_ewma batch;
  linear_fit batch_fit;
  double decode_slope = -1;
  // How far latency and per-token samples fall from their estimates: below this, cost
  // differences between endpoints are noise.
  deviation latency_dev, tpot_dev;
  time_ewma service;              // every request: picked -> last byte
  prefill_rate prefill;           // seconds per uncached prompt block (prefix affinity)
  double prefill_per_block = -1;  // the rate in force: its own, else the cluster's; -1: neither
  bool reports_cached = false;    // its responses carry usage.prompt_tokens_details.cached_tokens
  std::uint64_t dispatched = 0, completed = 0;
  // Storage transfers: the bytes this worker's transfers in flight are expected to move; the
  // endpoint's capacity (bytes/s of all its transfers together: a transfer's rate times the
  // transfers it shared the endpoint with) and its flow rate (bytes/s one transfer gets), over
  // transfers large enough to time. A transfer alone shows both at once only if one flow fills the
  // endpoint; transfers that shared it show the capacity (aggregate_measured) and a floor of the
  // flow rate.
  double transfer_bytes = 0;
  time_ewma throughput;
  time_ewma flow_rate;
  bool aggregate_measured = false;
  // Readings in a row that found it slow against its peers (storage: a flow under half their
  // rate; streams: a per-token time over twice their median): each doubles the time its readings
  // take to fade toward its peers', up to 16x, so a replica or engine that stays slow is re-tried
  // ever more rarely.
  unsigned slow_streak = 0;
  std::int64_t slow_at_ns = 0;  // the last sample that found it slow (steady clock)
  // Requests still waiting for their first byte: how many and the sum of their pick times (ns),
  // so a backend that stalls looks slow before any of them answers.
  std::uint32_t awaiting_first = 0;
  std::int64_t awaiting_since_sum_ns = 0;
  // Seconds of prefill this worker's requests still before their first token will cost the
  // engine (prefix affinity): it runs them in its steps, so everything there waits for them.
  double prefill_ahead = 0;

  // The gateway's other workers' requests on it (null: none to ask), and which slot is this one.
  load_board* board = nullptr;
  unsigned worker = 0;

  // The control thread's last word on this endpoint, and this worker's counts (and the other
  // workers' in flight) when the load reading was scraped (for dead reckoning between scrapes).
  probe_signals probe;
  std::uint64_t dispatched_at_scrape = 0, completed_at_scrape = 0;
  std::uint32_t others_at_scrape = 0;
  double capacity_seen = 0;  // the most requests the backend reported running at once

  // Mirrors for readers on other threads (admin, metrics); relaxed stores by the owning worker.
  std::atomic<std::uint32_t> in_flight_shared{0};
  std::atomic<bool> healthy_shared{true};
  std::atomic<std::uint64_t> requests_total{0};
  std::atomic<std::uint64_t> failures_total{0};
  std::atomic<double> ttft_shared{-1}, tpot_shared{-1}, response_shared{-1};
  std::atomic<double> decode_slope_shared{-1};          // seconds per token per extra stream
  std::atomic<double> prefill_shared{-1};               // seconds per block, -1 until learned
  std::atomic<std::uint64_t> indexed_blocks_shared{0};  // in this worker's prefix index
  std::atomic<double> throughput_shared{-1};            // bytes/s, -1 until measured
  std::atomic<double> flow_rate_shared{-1};             // bytes/s, -1 until measured
  std::atomic<double> transfer_bytes_shared{0};
  // The cost model's terms as of this worker's last housekeeping tick.
  std::atomic<double> score_shared{-1}, latency_shared{-1}, queue_shared{-1}, outstanding_shared{0};
  std::atomic<double> decode_shared{0}, batch_shared{0}, noise_shared{0}, load_shared{0};
};

}  // namespace meridian::upstream
