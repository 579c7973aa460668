#include "meridian/routing/balancer.hpp"

#include <doctest/doctest.h>

#include <array>
#include <map>

using namespace meridian;

namespace {
struct endpoints {
  std::array<upstream::endpoint_stats, 4> stats;
  std::array<const upstream::endpoint_stats*, 4> view{&stats[0], &stats[1], &stats[2], &stats[3]};
};
}  // namespace

TEST_CASE("round robin cycles and skips unhealthy or excluded endpoints") {
  endpoints e;
  auto b = routing::make_balancer(config::balancer_kind::round_robin);
  common::random_source rng(1);
  std::map<std::size_t, int> seen;
  for (int i = 0; i < 8; ++i) ++seen[b->pick(e.view, routing::no_endpoint, rng)];
  CHECK(seen.size() == 4);
  for (auto& [k, v] : seen) CHECK(v == 2);
  e.stats[1].healthy = false;
  for (int i = 0; i < 12; ++i) {
    auto p = b->pick(e.view, 2, rng);
    CHECK(p != 1);
    CHECK(p != 2);
  }
  for (auto& s : e.stats) s.healthy = false;
  CHECK(b->pick(e.view, routing::no_endpoint, rng) == routing::no_endpoint);
}

TEST_CASE("least request (P2C) prefers the endpoint with fewer requests in flight") {
  endpoints e;
  auto b = routing::make_balancer(config::balancer_kind::least_request);
  common::random_source rng(42);
  e.stats[0].in_flight = 50;
  e.stats[1].in_flight = 50;
  e.stats[2].in_flight = 50;
  e.stats[3].in_flight = 0;
  std::map<std::size_t, int> seen;
  for (int i = 0; i < 1000; ++i) ++seen[b->pick(e.view, routing::no_endpoint, rng)];
  // Endpoint 3 wins whenever it is one of the two draws: 1 - (3/4 * 2/3) = 1/2 of picks.
  CHECK(seen[3] > 420);
  CHECK(seen[3] < 580);
  // The busiest endpoint is never chosen over an idle one.
  e.stats[0].in_flight = 1000;
  seen.clear();
  for (int i = 0; i < 1000; ++i) ++seen[b->pick(e.view, routing::no_endpoint, rng)];
  CHECK(seen[0] < seen[3]);
  e.stats[3].healthy = false;
  for (int i = 0; i < 100; ++i) CHECK(b->pick(e.view, 2, rng) != 3);
}
