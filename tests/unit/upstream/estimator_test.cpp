#include "meridian/upstream/estimator.hpp"

#include <doctest/doctest.h>

using namespace meridian;
using namespace std::chrono_literals;

namespace {
common::time_point t0() {
  return common::time_point{} + std::chrono::hours(1);
}
}  // namespace

TEST_CASE("PeakEWMA rises at once and decays toward lower samples with its time constant") {
  upstream::peak_ewma e;
  CHECK_FALSE(e.known());
  CHECK(e.value(t0(), 10) == 0);
  e.observe(0.1, t0(), 10);
  CHECK(e.known());
  CHECK(e.value(t0(), 10) == doctest::Approx(0.1));
  e.observe(1.0, t0() + 1ms, 10);  // a slow answer counts in full, immediately
  CHECK(e.value(t0() + 1ms, 10) == doctest::Approx(1.0));
  // A fast answer 10 s (one time constant) later: the estimate moves 63% of the way to it.
  e.observe(0.1, t0() + 10s, 10);
  CHECK(e.value(t0() + 10s, 10) == doctest::Approx(0.1 + 0.9 * 0.36788).epsilon(0.01));
}

TEST_CASE("PeakEWMA under steady traffic settles on the samples, not below them") {
  upstream::peak_ewma e;
  auto t = t0();
  e.observe(0.2, t, 1);
  // 20 samples a second of 50 ms for 10 time constants: the estimate is 50 ms when read.
  for (int i = 0; i < 200; ++i) e.observe(0.05, t += 50ms, 1);
  CHECK(e.value(t, 1) == doctest::Approx(0.05).epsilon(0.01));
  // Samples alternating 40 and 60 ms: each 60 is a peak, and 40s pull it down again.
  for (int i = 0; i < 200; ++i) e.observe(i % 2 ? 0.04 : 0.06, t += 50ms, 1);
  CHECK(e.value(t, 1) < 0.06);
  CHECK(e.value(t, 1) > 0.05);
}

TEST_CASE("PeakEWMA decays toward zero while no samples come, so an idle endpoint is retried") {
  upstream::peak_ewma e;
  e.observe(2.0, t0(), 1);
  CHECK(e.value(t0() + 1s, 1) == doctest::Approx(2.0 * 0.36788).epsilon(0.01));
  CHECK(e.value(t0() + 10s, 1) < 0.001);
  CHECK(e.value(t0() - 1s, 1) == doctest::Approx(2.0));  // a clock read before the sample
}

TEST_CASE("time EWMA weighs samples by the time between them") {
  upstream::time_ewma e;
  e.observe(1.0, t0(), 10);
  CHECK(e.value() == doctest::Approx(1.0));
  // A burst of samples at one instant moves it only a little.
  for (int i = 0; i < 10; ++i) e.observe(0.0, t0(), 10);
  CHECK(e.value() > 0.99);
  // One sample after a long quiet moves it almost all the way.
  e.observe(0.0, t0() + 100s, 10);
  CHECK(e.value() < 0.001);
}
