// Load balancers: pick an endpoint index from a cluster's per-worker endpoint stats. Knows no
// sockets. One instance per cluster per worker (they keep small state, e.g. the RR cursor).
#pragma once

#include <cstddef>
#include <memory>
#include <span>

#include "meridian/common/random.hpp"
#include "meridian/config/config.hpp"
#include "meridian/upstream/stats.hpp"

namespace meridian::routing {

inline constexpr std::size_t no_endpoint = static_cast<std::size_t>(-1);

class balancer {
 public:
  virtual ~balancer() = default;
  // Picks a healthy endpoint other than `exclude` (pass no_endpoint to allow all), or
  // no_endpoint when none qualifies.
  virtual std::size_t pick(std::span<const upstream::endpoint_stats* const> endpoints,
                           std::size_t exclude, common::random_source& rng) = 0;
};

std::unique_ptr<balancer> make_balancer(config::balancer_kind kind);

}  // namespace meridian::routing
