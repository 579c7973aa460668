#include "meridian/routing/prefix_affinity.hpp"

#include <algorithm>
#include <cmath>

namespace meridian::routing {

prefix_affinity::prefix_affinity(const config::cluster_config& c)
    : index_(c.prefix_affinity.capacity),
      load_factor_(c.prefix_affinity.load_factor),
      floor_(static_cast<double>(c.latency.capacity)),
      prior_(std::chrono::duration<double>(c.prefix_affinity.prefill_per_block).count()) {
  for (const auto& e : c.endpoints) ids_.push_back(hash_key(e.address.to_string()));
}

void prefix_affinity::endpoints_changed(std::span<const std::string> addresses,
                                        std::span<const std::uint32_t> new_of_old) {
  ids_.clear();
  for (const auto& a : addresses) ids_.push_back(hash_key(a));
  index_.renumber(new_of_old);
}

bool prefix_affinity::begin(std::span<const upstream::endpoint_stats* const> eps,
                            std::span<const std::uint64_t> blocks, std::uint64_t session,
                            const std::vector<bool>& eligible) {
  eps_ = eps;
  n_eps_ = eps.size();
  n_blocks_ = blocks.size();
  session_ = session != 0;
  top_ = best_ = favourite_ = n_eps_;
  indexed_ = false;
  if (n_blocks_ == 0 && !session_) return false;
  matched_.resize(n_eps_);
  index_.match(blocks, matched_);
  std::uint64_t key = session_ ? session : blocks[std::min(n_blocks_, key_blocks) - 1];
  std::uint64_t top_weight = 0;
  std::uint32_t best_matched = 0, total = 0, n = 0;
  for (std::size_t i = 0; i < n_eps_; ++i) {
    if (!eligible[i]) continue;
    ++n;
    total += eps[i]->in_flight;
    if (matched_[i] > 0) indexed_ = true;
    if (matched_[i] > best_matched) best_matched = matched_[i], best_ = i;
    auto w = rendezvous_weight(key, i < ids_.size() ? ids_[i] : i);
    if (top_ == n_eps_ || w > top_weight) top_weight = w, top_ = i;
  }
  if (n == 0) return false;
  // Consistent hashing with bounded loads (Mirrokni et al.): at most ceil(c * (m + 1) / n)
  // requests in flight, the new one included; but never below the capacity an endpoint runs at
  // full speed (latency.capacity): at low load the fair share is one or two requests, and
  // spilling from an engine with free slots would only buy a cold prefill elsewhere.
  bound_ = std::max(floor_, std::ceil(load_factor_ * (static_cast<double>(total) + 1) / n));
  // The rendezvous choice is presumed to hold the whole prompt while no endpoint is known to
  // hold any of it, and otherwise as much as the best known holder: other replicas send it
  // there too, so ties go to it and replicas whose indexes differ still converge on it. That bets
  // on prompts coming back; where they seldom do (under one look-up in ten finds a block), the
  // bet only biases the spread, and nothing is presumed.
  reuse_ += ((indexed_ ? 1.0 : 0.0) - reuse_) / 256;
  presumed_ = indexed_ ? best_matched : reuse_ >= 0.1 ? n_blocks_ : 0;
  std::size_t most = 0;
  for (std::size_t i = 0; i < n_eps_; ++i) {
    if (!eligible[i]) continue;
    std::size_t c = held(i);
    if (c > most) most = c, favourite_ = i;
  }
  return true;
}

std::size_t prefix_affinity::held(std::size_t i) const {
  return std::max<std::size_t>(i < matched_.size() ? matched_[i] : 0, i == top_ ? presumed_ : 0);
}

std::size_t prefix_affinity::credit(std::size_t i) const {
  return over(i) ? 0 : held(i);
}

double prefix_affinity::extra(std::size_t i, const upstream::endpoint_stats& s,
                              std::int32_t& uncached) const {
  auto left = n_blocks_ - std::min(n_blocks_, credit(i));
  // What the latency sample will be measured against: the blocks the index knows it holds, not
  // a presumption (the presumed endpoint may be cold: then the sample is a cold one).
  auto known = i < matched_.size() ? std::min<std::size_t>(matched_[i], n_blocks_) : 0;
  uncached = static_cast<std::int32_t>(n_blocks_ - known);
  return static_cast<double>(left) * (s.prefill_per_block >= 0 ? s.prefill_per_block : prior_);
}

}  // namespace meridian::routing
