#include "load/arrival.hpp"

#include <algorithm>
#include <cmath>

namespace meridian::loadtest {

std::optional<arrival_kind> parse_arrival_kind(std::string_view s) {
  if (s == "constant" || s == "uniform") return arrival_kind::constant;
  if (s == "poisson") return arrival_kind::poisson;
  if (s == "gamma") return arrival_kind::gamma;
  return std::nullopt;
}

rate_profile rate_profile::constant(double rate, double duration_s) {
  rate_profile p;
  p.duration_ = duration_s;
  p.segments_.push_back({0, duration_s, rate, rate});
  return p;
}

std::optional<rate_profile> rate_profile::from_points(std::vector<point> points,
                                                      double duration_s) {
  if (points.empty() || duration_s <= 0) return std::nullopt;
  std::stable_sort(points.begin(), points.end(), [](auto& a, auto& b) { return a.at_s < b.at_s; });
  rate_profile p;
  p.duration_ = duration_s;
  double prev_t = 0, prev_rate = points.front().at_s > 0 ? 0 : points.front().rate;
  for (auto& pt : points) {
    if (pt.rate < 0 || pt.at_s < 0) return std::nullopt;
    const double t = std::min(pt.at_s, duration_s);
    if (t > prev_t) p.segments_.push_back({prev_t, t, prev_rate, pt.ramp ? pt.rate : prev_rate});
    prev_t = t;
    prev_rate = pt.rate;
  }
  if (prev_t < duration_s) p.segments_.push_back({prev_t, duration_s, prev_rate, prev_rate});
  return p;
}

double rate_profile::rate_at(double t) const {
  for (auto& s : segments_)
    if (t >= s.start_s && t < s.end_s)
      return s.rate_from + (s.rate_to - s.rate_from) * (t - s.start_s) / (s.end_s - s.start_s);
  return 0;
}

double rate_profile::expected_count() const {
  double n = 0;
  for (auto& s : segments_) n += (s.rate_from + s.rate_to) / 2 * (s.end_s - s.start_s);
  return n;
}

rate_profile rate_profile::scaled(double f) const {
  rate_profile p = *this;
  for (auto& s : p.segments_) {
    s.rate_from *= f;
    s.rate_to *= f;
  }
  return p;
}

arrival_schedule::arrival_schedule(arrival_kind kind, double burstiness, rate_profile profile,
                                   std::uint64_t seed, double phase)
    : kind_(kind),
      burstiness_(burstiness > 0 ? burstiness : 1),
      profile_(std::move(profile)),
      rng_(seed),
      phase_(phase) {}

double arrival_schedule::unit_gap() {
  switch (kind_) {
    case arrival_kind::constant:
      return 1.0;
    case arrival_kind::poisson:
      return std::exponential_distribution<double>(1.0)(rng_);
    case arrival_kind::gamma:
      return std::gamma_distribution<double>(burstiness_, 1.0 / burstiness_)(rng_);
  }
  return 1.0;
}

std::optional<double> arrival_schedule::next() {
  if (first_ && kind_ == arrival_kind::constant)
    lambda_ += phase_;
  else
    lambda_ += unit_gap();
  first_ = false;
  auto& segs = profile_.segments();
  while (seg_ < segs.size()) {
    const auto& s = segs[seg_];
    const double len = s.end_s - s.start_s;
    const double area = (s.rate_from + s.rate_to) / 2 * len;
    const double dl = lambda_ - seg_lambda0_;
    if (dl < area) {
      const double k = (s.rate_to - s.rate_from) / len;
      double dt;
      if (std::abs(k) < 1e-12)
        dt = dl / s.rate_from;
      else
        dt = (-s.rate_from + std::sqrt(std::max(0.0, s.rate_from * s.rate_from + 2 * k * dl))) / k;
      return s.start_s + std::clamp(dt, 0.0, len);
    }
    seg_lambda0_ += area;
    ++seg_;
  }
  return std::nullopt;
}

}  // namespace meridian::loadtest
