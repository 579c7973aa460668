#include "meridian/common/random.hpp"

#include <doctest/doctest.h>

#include <array>

using namespace meridian::common;

TEST_CASE("a seeded random source repeats itself and spreads evenly") {
  random_source a(7), b(7), c(8);
  for (int i = 0; i < 100; ++i) CHECK(a.next() == b.next());
  CHECK(a.next() != c.next());
  std::array<int, 8> buckets{};
  random_source r(1);
  for (int i = 0; i < 80000; ++i) ++buckets[r.below(8)];
  for (int n : buckets) CHECK(n == doctest::Approx(10000).epsilon(0.05));
  for (int i = 0; i < 1000; ++i) {
    double u = r.unit();
    CHECK(u >= 0.0);
    CHECK(u < 1.0);
  }
}
