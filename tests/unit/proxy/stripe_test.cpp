#include "proxy/stripe.hpp"

#include <doctest/doctest.h>

using namespace meridian;

namespace {
config::stripe_config stripe(std::uint64_t min_size, std::uint64_t part_size) {
  config::stripe_config c;
  c.enabled = true;
  c.min_size = min_size;
  c.part_size = part_size;
  c.max_parallel = 4;
  return c;
}
}  // namespace

TEST_CASE("a striped object's parts after the first cover it exactly, part_size each") {
  auto plan = proxy::stripe_plan(10'000, 999, stripe(4'000, 1'000));
  REQUIRE(plan.size() == 9);
  CHECK(plan.front() == std::pair<std::uint64_t, std::uint64_t>{1'000, 1'999});
  CHECK(plan.back() == std::pair<std::uint64_t, std::uint64_t>{9'000, 9'999});
  for (std::size_t i = 1; i < plan.size(); ++i) CHECK(plan[i].first == plan[i - 1].second + 1);
  // A last part shorter than the rest.
  auto ragged = proxy::stripe_plan(10'500, 999, stripe(4'000, 1'000));
  CHECK(ragged.back() == std::pair<std::uint64_t, std::uint64_t>{10'000, 10'499});
}

TEST_CASE("a cold object found smaller than min_size gets its rest as one part") {
  auto plan = proxy::stripe_plan(3'500, 999, stripe(4'000, 1'000));
  REQUIRE(plan.size() == 1);
  CHECK(plan[0] == std::pair<std::uint64_t, std::uint64_t>{1'000, 3'499});
  // The first part held all of it: nothing more.
  CHECK(proxy::stripe_plan(800, 799, stripe(4'000, 1'000)).empty());
  CHECK(proxy::stripe_plan(0, 0, stripe(4'000, 1'000)).empty());
}
