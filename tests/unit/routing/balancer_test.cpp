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

TEST_CASE("round robin cycles, skips unhealthy endpoints and lists the next ones as fallbacks") {
  endpoints e;
  auto b = routing::make_balancer(config::balancer_kind::round_robin);
  common::random_source rng(1);
  std::map<std::size_t, int> seen;
  for (int i = 0; i < 8; ++i) {
    auto c = b->pick(e.view, rng);
    REQUIRE(c.size() == 4);
    CHECK(c[1] == (c[0] + 1) % 4);
    ++seen[c[0]];
  }
  CHECK(seen.size() == 4);
  for (auto& [k, v] : seen) CHECK(v == 2);
  e.stats[1].healthy = false;
  for (int i = 0; i < 12; ++i) {
    auto c = b->pick(e.view, rng);
    CHECK(c.size() == 3);
    for (auto ep : c) CHECK(ep != 1);
  }
}

TEST_CASE("with no healthy endpoint every endpoint is a candidate (panic mode)") {
  endpoints e;
  for (auto& s : e.stats) s.healthy = false;
  common::random_source rng(3);
  for (auto kind : {config::balancer_kind::round_robin, config::balancer_kind::least_request}) {
    auto b = routing::make_balancer(kind);
    auto c = b->pick(e.view, rng);
    CHECK(c.size() == 4);
    std::map<std::uint32_t, int> distinct;
    for (auto ep : c) ++distinct[ep];
    CHECK(distinct.size() == 4);
  }
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
  for (int i = 0; i < 1000; ++i) {
    auto c = b->pick(e.view, rng);
    REQUIRE(c.size() == 2);  // the winner, then the other draw as the fallback
    CHECK(c[0] != c[1]);
    ++seen[c[0]];
  }
  // Endpoint 3 wins whenever it is one of the two draws: 1 - (3/4 * 2/3) = 1/2 of picks.
  CHECK(seen[3] > 420);
  CHECK(seen[3] < 580);
  // The busiest endpoint is never chosen over an idle one.
  e.stats[0].in_flight = 1000;
  seen.clear();
  for (int i = 0; i < 1000; ++i) ++seen[b->pick(e.view, rng)[0]];
  CHECK(seen[0] < seen[3]);
  e.stats[3].healthy = false;
  for (int i = 0; i < 100; ++i)
    for (auto ep : b->pick(e.view, rng)) CHECK(ep != 3);
}
