#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "load/histogram.hpp"

using meridian::loadtest::histogram;

namespace {
std::uint64_t exact_percentile(std::vector<std::uint64_t> v, double p) {
  std::sort(v.begin(), v.end());
  auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
  if (rank < 1) rank = 1;
  return v[rank - 1];
}
}  // namespace

TEST_CASE("histogram percentiles stay within 1% of the exact nearest-rank values") {
  std::mt19937_64 rng(42);
  std::lognormal_distribution<double> d(13.0, 1.5);  // ~0.4 ms median in ns, long tail
  std::vector<std::uint64_t> v;
  histogram h;
  for (int i = 0; i < 200000; ++i) {
    auto x = static_cast<std::uint64_t>(d(rng)) + 1;
    v.push_back(x);
    h.record(x);
  }
  CHECK(h.count() == v.size());
  for (double p : {1.0, 10.0, 50.0, 90.0, 99.0, 99.9, 99.99}) {
    const double exact = static_cast<double>(exact_percentile(v, p));
    const double got = static_cast<double>(h.percentile(p));
    INFO("p" << p << " exact " << exact << " got " << got);
    CHECK(std::abs(got - exact) / exact <= 0.01);
  }
  CHECK(h.max() == *std::max_element(v.begin(), v.end()));
  CHECK(h.min() == *std::min_element(v.begin(), v.end()));
  double sum = 0;
  for (auto x : v) sum += static_cast<double>(x);
  CHECK(std::abs(h.mean() - sum / v.size()) / (sum / v.size()) < 1e-9);
}

TEST_CASE("histogram handles extreme values and small exact values") {
  histogram h;
  h.record(0);
  h.record(1);
  h.record(255);
  h.record(UINT64_MAX);
  h.record(UINT64_MAX / 3);
  CHECK(h.count() == 5);
  CHECK(h.percentile(20) == 0);
  CHECK(h.percentile(40) == 1);
  CHECK(h.percentile(60) == 255);
  CHECK(h.percentile(100) == UINT64_MAX);
  const double third = static_cast<double>(UINT64_MAX / 3);
  CHECK(std::abs(static_cast<double>(h.percentile(80)) - third) / third <= 0.01);
  // Every bucket's bounds are consistent with index_of.
  for (std::size_t i = 0; i < histogram::bucket_count; i += 37) {
    CHECK(histogram::index_of(histogram::lower_of(i)) == i);
    CHECK(histogram::index_of(histogram::lower_of(i) + histogram::width_of(i) - 1) == i);
  }
}

TEST_CASE("histogram merge equals recording everything in one") {
  histogram a, b, all;
  std::mt19937_64 rng(7);
  for (int i = 0; i < 10000; ++i) {
    auto x = rng() % 1000000;
    (i % 2 ? a : b).record(x);
    all.record(x);
  }
  a.merge(b);
  CHECK(a.count() == all.count());
  for (double p : {50.0, 99.0, 99.9}) CHECK(a.percentile(p) == all.percentile(p));
  a.reset();
  CHECK(a.count() == 0);
  CHECK(a.percentile(99) == 0);
}
