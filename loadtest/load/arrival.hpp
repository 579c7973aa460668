// Open-loop arrival schedules (constant, Poisson, gamma) over a piecewise-linear rate profile; one
// per thread.
#pragma once
#include <cstdint>
#include <optional>
#include <random>
#include <string_view>
#include <vector>

namespace meridian::loadtest {

enum class arrival_kind { constant, poisson, gamma };
std::optional<arrival_kind> parse_arrival_kind(std::string_view s);

// Rate in requests/s as a function of time: segments are either flat or linear ramps.
class rate_profile {
 public:
  struct segment {
    double start_s, end_s, rate_from, rate_to;
  };
  static rate_profile constant(double rate, double duration_s);
  // points: (at_s, rate, ramp_from_previous); the last point's rate holds until duration_s.
  struct point {
    double at_s;
    double rate;
    bool ramp;
  };
  static std::optional<rate_profile> from_points(std::vector<point> points, double duration_s);

  double rate_at(double t) const;
  double duration() const { return duration_; }
  double expected_count() const;
  const std::vector<segment>& segments() const { return segments_; }
  rate_profile scaled(double factor) const;

 private:
  std::vector<segment> segments_;
  double duration_ = 0;
};

// Draws arrival times by generating unit-rate gaps and mapping them through the inverse of the
// cumulative rate, which keeps Poisson/gamma statistics exact across rate steps and ramps.
class arrival_schedule {
 public:
  // burstiness: gamma shape (1 = Poisson, <1 burstier, >1 smoother), as in `vllm bench serve`.
  // phase in [0,1): offset of the first constant-rate arrival, so T threads interleave evenly.
  arrival_schedule(arrival_kind kind, double burstiness, rate_profile profile, std::uint64_t seed,
                   double phase = 0);
  // Seconds since start of the next intended send, or nullopt when the profile ends.
  std::optional<double> next();

 private:
  double unit_gap();
  arrival_kind kind_;
  double burstiness_;
  rate_profile profile_;
  std::mt19937_64 rng_;
  double lambda_ = 0;  // position in operational (unit-rate) time
  std::size_t seg_ = 0;
  double seg_lambda0_ = 0;  // cumulative rate at the start of seg_
  bool first_ = true;
  double phase_;
};

}  // namespace meridian::loadtest
