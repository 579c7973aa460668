#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "load/arrival.hpp"

using namespace meridian::loadtest;

namespace {
std::vector<double> all_arrivals(arrival_kind k, double burst, const rate_profile& p,
                                 std::uint64_t seed = 1) {
  arrival_schedule s(k, burst, p, seed);
  std::vector<double> v;
  while (auto t = s.next()) v.push_back(*t);
  return v;
}
double cv_of_gaps(const std::vector<double>& v) {
  double m = 0, m2 = 0;
  for (std::size_t i = 1; i < v.size(); ++i) m += v[i] - v[i - 1];
  m /= static_cast<double>(v.size() - 1);
  for (std::size_t i = 1; i < v.size(); ++i) m2 += (v[i] - v[i - 1] - m) * (v[i] - v[i - 1] - m);
  return std::sqrt(m2 / static_cast<double>(v.size() - 2)) / m;
}
}  // namespace

TEST_CASE("constant arrivals are evenly spaced at the target rate") {
  auto v = all_arrivals(arrival_kind::constant, 1, rate_profile::constant(100, 2));
  CHECK(v.size() == 200);
  for (std::size_t i = 1; i < v.size(); ++i)
    CHECK(v[i] - v[i - 1] == doctest::Approx(0.01).epsilon(1e-9));
}

TEST_CASE("poisson and gamma arrivals have the right rate and burstiness") {
  auto p = all_arrivals(arrival_kind::poisson, 1, rate_profile::constant(1000, 20));
  CHECK(std::abs(static_cast<double>(p.size()) - 20000) < 600);  // ~4 sigma
  CHECK(cv_of_gaps(p) == doctest::Approx(1.0).epsilon(0.05));
  auto bursty = all_arrivals(arrival_kind::gamma, 0.25, rate_profile::constant(1000, 20));
  CHECK(std::abs(static_cast<double>(bursty.size()) - 20000) < 1500);
  CHECK(cv_of_gaps(bursty) == doctest::Approx(2.0).epsilon(0.1));  // cv = 1/sqrt(shape)
  auto smooth = all_arrivals(arrival_kind::gamma, 4, rate_profile::constant(1000, 20));
  CHECK(cv_of_gaps(smooth) == doctest::Approx(0.5).epsilon(0.1));
}

TEST_CASE("rate steps and ramps follow the profile") {
  auto prof = rate_profile::from_points(
      {{0, 100, false}, {5, 300, false}, {10, 0, false}, {15, 200, true}}, 20);
  REQUIRE(prof);
  CHECK(prof->expected_count() == doctest::Approx(100 * 5 + 300 * 5 + 0 + 100 * 5 + 200 * 5));
  auto v = all_arrivals(arrival_kind::constant, 1, *prof);
  int in[4] = {};
  for (double t : v) in[std::min(3, static_cast<int>(t / 5))]++;
  CHECK(std::abs(in[0] - 500) <= 1);
  CHECK(std::abs(in[1] - 1500) <= 1);
  CHECK(std::abs(in[2] - 500) <= 2);   // ramp 0 -> 200 between 10 s and 15 s
  CHECK(std::abs(in[3] - 1000) <= 2);  // then 200/s
  int first_half_of_ramp = 0;
  for (double t : v) first_half_of_ramp += t >= 10 && t < 12.5;
  CHECK(std::abs(first_half_of_ramp - 125) <=
        2);  // a quarter of the ramp's area lies in its first half
  CHECK(std::is_sorted(v.begin(), v.end()));
}

TEST_CASE("threads interleave constant schedules by phase") {
  arrival_schedule a(arrival_kind::constant, 1, rate_profile::constant(50, 1), 1, 0.0);
  arrival_schedule b(arrival_kind::constant, 1, rate_profile::constant(50, 1), 2, 0.5);
  CHECK(*a.next() == doctest::Approx(0.0));
  CHECK(*b.next() == doctest::Approx(0.01));
}
