// The prefix term of latency_aware's cost, one instance per cluster and worker. A request's
// prompt blocks are looked up in the worker's prefix index; each endpoint is credited with the
// leading blocks it holds. The prompt's rendezvous choice (the endpoint with the highest weight
// for the prompt's first blocks, or for the session header when one is configured) is presumed
// to hold all of them while no endpoint is known to hold any, and otherwise as much as the best
// known holder, since every replica sends that prompt there: replicas with cold or diverging
// private indexes still agree. An endpoint's cost gains the prefill of the blocks it is not
// credited with, at its learned rate. Credit stops at the load bound: no endpoint takes more
// than load_factor times the mean number of requests in flight (plus one), or latency.capacity
// if that is more, for the sake of its cache.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "meridian/config/config.hpp"
#include "meridian/routing/prefix.hpp"
#include "meridian/upstream/stats.hpp"

namespace meridian::routing {

class prefix_affinity {
 public:
  // How many leading blocks make a prompt's rendezvous key: prompts that share this much go to
  // the same endpoint; a conversation's key is fixed once its history is this long.
  static constexpr std::size_t key_blocks = 16;

  explicit prefix_affinity(const config::cluster_config& c);

  // Prepares one pick over `eps` (true when the request has blocks or a session to go by).
  // `eligible[i]`: endpoint i may be picked.
  bool begin(std::span<const upstream::endpoint_stats* const> eps,
             std::span<const std::uint64_t> blocks, std::uint64_t session,
             const std::vector<bool>& eligible);
  // Seconds of prefill endpoint i would spend on the blocks it is not credited with; `uncached`
  // gets the number of blocks the index does not know it to hold (what its latency sample
  // will be taken against).
  double extra(std::size_t i, const upstream::endpoint_stats& s, std::int32_t& uncached) const;
  // The rendezvous choice, and the endpoint the index credits with the most blocks (n: none).
  std::size_t preferred() const { return top_; }
  std::size_t best_held() const { return best_; }
  // The session's endpoint while it is within the load bound (n: none or over it).
  std::size_t pinned() const { return session_ && top_ < n_eps_ && !over(top_) ? top_ : n_eps_; }
  // The endpoint with the most credit regardless of load (n: none); whether it is over the bound.
  std::size_t favourite() const { return favourite_; }
  bool over(std::size_t i) const { return static_cast<double>(in_flight(i)) + 1 > bound_; }
  bool indexed() const { return indexed_; }
  std::size_t blocks() const { return n_blocks_; }

  void dispatched(std::uint32_t i, std::span<const std::uint64_t> blocks) {
    if (!blocks.empty()) index_.insert(blocks, i);
  }
  std::size_t indexed_blocks(std::uint32_t i) const { return index_.blocks_of(i); }
  // Endpoint i holds nothing any more (it restarted).
  void forget(std::uint32_t i) { index_.forget(i); }
  // The cluster's endpoints are now `addresses` (endpoint e was new_of_old[e] before).
  void endpoints_changed(std::span<const std::string> addresses,
                         std::span<const std::uint32_t> new_of_old);

 private:
  std::uint32_t in_flight(std::size_t i) const { return eps_[i]->in_flight; }
  std::size_t held(std::size_t i) const;    // blocks it is known or presumed to hold
  std::size_t credit(std::size_t i) const;  // ... while within the load bound

  prefix_index index_;
  std::vector<std::uint64_t> ids_;  // per endpoint: a hash of its address (replicas agree)
  std::vector<std::uint32_t> matched_;
  double load_factor_;
  double floor_;  // the bound never falls below this many requests in flight
  double prior_;  // seconds per block until an endpoint's rate is learned
  // The pick in progress.
  std::span<const upstream::endpoint_stats* const> eps_;
  std::size_t n_eps_ = 0, n_blocks_ = 0, top_ = 0, best_ = 0, favourite_ = 0;
  double bound_ = 0;
  std::size_t presumed_ = 0;  // blocks the rendezvous choice is presumed to hold
  double reuse_ = 1;          // the share of recent look-ups that found a block (EWMA)
  bool session_ = false, indexed_ = false;
};

}  // namespace meridian::routing
