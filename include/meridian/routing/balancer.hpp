// Load balancers: order a cluster's endpoints for one request from per-worker endpoint stats.
// Knows no sockets. One instance per cluster per worker (they keep small state, e.g. the RR
// cursor), used only by that worker's thread.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "meridian/common/clock.hpp"
#include "meridian/common/random.hpp"
#include "meridian/config/config.hpp"
#include "meridian/routing/cost.hpp"
#include "meridian/upstream/stats.hpp"

namespace meridian::routing {

// Why the first candidate was chosen (routing_decisions_total's reason label).
enum class pick_reason { score, round_robin, least_request, panic, count_ };
std::string_view to_string(pick_reason r);

// The endpoints to try for one request, best first: the first attempt takes [0], a retry the
// next one. Indices into the cluster's endpoint list.
class candidates {
 public:
  static constexpr std::size_t capacity = 4;
  void push(std::uint32_t i) {
    for (std::size_t k = 0; k < count_; ++k)
      if (items_[k] == i) return;
    if (count_ < capacity) items_[count_++] = i;
  }
  std::size_t size() const { return count_; }
  bool empty() const { return count_ == 0; }
  bool full() const { return count_ == capacity; }
  std::uint32_t operator[](std::size_t k) const { return items_[k]; }
  const std::uint32_t* begin() const { return items_.data(); }
  const std::uint32_t* end() const { return items_.data() + count_; }

  pick_reason reason = pick_reason::score;
  double score = -1;  // the first candidate's cost in seconds, when the balancer has one
  // Prefix affinity, when the request had prompt blocks: per candidate, the blocks the index
  // does not know it to hold (-1: no prompt), and what the pick made of the prefix.
  std::array<std::int32_t, capacity> uncached{-1, -1, -1, -1};
  // latency_aware: per candidate, the wait its cost model expected from the endpoint's load
  // (seconds; -1: not modelled) and the requests it took the endpoint to hold, so the try that
  // follows learns against the same figures the pick used.
  std::array<double, capacity> queue{-1, -1, -1, -1};
  std::array<double, capacity> outstanding{};
  std::uint32_t prompt_blocks = 0;
  bool prefix_indexed = false;  // some endpoint held a leading block (a look-up hit)
  enum class spill : std::uint8_t { none, load, cost } prefix_spill = spill::none;

 private:
  std::array<std::uint32_t, capacity> items_{};
  std::size_t count_ = 0;
};

// What one pick may depend on besides the endpoints: randomness, the time, and the model the
// request names (only endpoints known to serve it are eligible; empty: any).
struct pick_input {
  common::random_source& rng;
  common::time_point now{};
  std::string_view model{};
  // Prefix affinity: the prompt's chained block hashes, and the session header's hash (0:
  // none), which then chooses the endpoint a conversation sticks to.
  std::span<const std::uint64_t> blocks{};
  std::uint64_t session = 0;
  // Output tokens of a typical streamed answer in the cluster (0: none seen yet).
  double answer_tokens = 0;
  // Storage: the bytes the transfer is expected to move (0: none, e.g. HEAD or DELETE), and
  // whether it writes (PUT): a write goes to the endpoint the cluster's write_to names.
  double bytes = 0;
  bool write = false;
};

class balancer {
 public:
  virtual ~balancer() = default;
  // Eligible (healthy, serving the model) endpoints in the order to try them. When none is
  // healthy, every endpoint that serves the model is a candidate in random order (Envoy's
  // panic mode: trying beats failing everything).
  candidates pick(std::span<const upstream::endpoint_stats* const> endpoints, pick_input& in);
  // The request went to endpoint `index` (each attempt): what the balancer learns from it.
  virtual void dispatched(std::uint32_t index, const pick_input& in) {
    (void)index;
    (void)in;
  }
  // The cluster's endpoints changed (a reload or DNS): now `addresses`, in order; old endpoint
  // e is new_of_old[e] (0xffffffff: it left).
  virtual void endpoints_changed(std::span<const std::string> addresses,
                                 std::span<const std::uint32_t> new_of_old) {
    (void)addresses;
    (void)new_of_old;
  }
  // Endpoint `index` lost its caches (it restarted, or came back): what it was credited with is
  // gone.
  virtual void forget(std::uint32_t index) { (void)index; }
  // Blocks of the prefix index held per endpoint (0 without prefix affinity).
  virtual std::size_t indexed_blocks(std::uint32_t index) const {
    (void)index;
    return 0;
  }

 protected:
  // Appends eligible endpoints in preference order; the base handles panic mode.
  virtual void order(std::span<const upstream::endpoint_stats* const> endpoints, pick_input& in,
                     candidates& out) = 0;
  static bool eligible(const upstream::endpoint_stats& s, const pick_input& in) {
    return s.healthy && (in.model.empty() || upstream::serves(s.probe.models.get(), in.model));
  }
  // Two distinct random eligible endpoints (power of two choices); n when there are none.
  static std::pair<std::size_t, std::size_t> two_choices(
      std::span<const upstream::endpoint_stats* const> eps, pick_input& in);
  // Fills `out` with eligible endpoints not yet in it, from a random start.
  static void add_rest(std::span<const upstream::endpoint_stats* const> eps, pick_input& in,
                       candidates& out);
};

std::unique_ptr<balancer> make_balancer(const config::cluster_config& c);

}  // namespace meridian::routing
