// Endpoint stats for balancer tests: a worker's view of a cluster, built by hand.
#pragma once

#include <vector>

#include "meridian/common/clock.hpp"
#include "meridian/upstream/stats.hpp"

namespace test {

struct endpoints {
  explicit endpoints(std::size_t n) : stats(n) {
    for (auto& s : stats) view.push_back(&s);
  }
  std::vector<meridian::upstream::endpoint_stats> stats;
  std::vector<const meridian::upstream::endpoint_stats*> view;
};

inline meridian::common::time_point t0() {
  return meridian::common::time_point{} + std::chrono::hours(1);
}

}  // namespace test
