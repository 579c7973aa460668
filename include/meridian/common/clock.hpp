// An injectable monotonic clock: production code reads the steady clock through it, tests drive
// a manual one. Any thread may read a clock; a manual clock is advanced by its test's thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace meridian::common {

using time_point = std::chrono::steady_clock::time_point;
using duration = std::chrono::steady_clock::duration;

class clock {
 public:
  virtual ~clock() = default;
  virtual time_point now() const = 0;
};

// The process-wide steady clock.
const clock& steady();

// A clock that moves only when told to (tests).
class manual_clock final : public clock {
 public:
  explicit manual_clock(time_point start = time_point{} + std::chrono::hours(1))
      : ns_(start.time_since_epoch().count()) {}
  time_point now() const override { return time_point(duration(ns_.load())); }
  void advance(duration d) { ns_.fetch_add(d.count()); }

 private:
  std::atomic<std::int64_t> ns_;
};

inline double seconds_between(time_point a, time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace meridian::common
