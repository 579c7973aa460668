// Load balancers: order a cluster's endpoints for one request from per-worker endpoint stats.
// Knows no sockets. One instance per cluster per worker (they keep small state, e.g. the RR
// cursor), used only by that worker's thread.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "meridian/common/random.hpp"
#include "meridian/config/config.hpp"
#include "meridian/upstream/stats.hpp"

namespace meridian::routing {

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
  std::uint32_t operator[](std::size_t k) const { return items_[k]; }
  const std::uint32_t* begin() const { return items_.data(); }
  const std::uint32_t* end() const { return items_.data() + count_; }

 private:
  std::array<std::uint32_t, capacity> items_{};
  std::size_t count_ = 0;
};

class balancer {
 public:
  virtual ~balancer() = default;
  // Healthy endpoints in the order to try them. When none is healthy, every endpoint is a
  // candidate in random order (Envoy's panic mode: trying beats failing everything).
  candidates pick(std::span<const upstream::endpoint_stats* const> endpoints,
                  common::random_source& rng);

 protected:
  // Appends healthy endpoints in preference order; the base adds the rest.
  virtual void order(std::span<const upstream::endpoint_stats* const> endpoints,
                     common::random_source& rng, candidates& out) = 0;
};

std::unique_ptr<balancer> make_balancer(config::balancer_kind kind);

}  // namespace meridian::routing
