// An injectable monotonic clock: production code reads the steady clock through it, tests drive
// a manual one. Timers wait on a clock too (runtime/timer.hpp): on the steady clock they are the
// kernel's; on a manual clock they end when the test advances it past their time. Any thread may
// read a clock; a manual clock is advanced by its test's thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>

namespace meridian::common {

using time_point = std::chrono::steady_clock::time_point;
using duration = std::chrono::steady_clock::duration;

class clock {
 public:
  virtual ~clock() = default;
  virtual time_point now() const = 0;

  // For timers on a clock that is not the steady clock: `wake(arg)` is called after every
  // advance, on the advancing thread, until unsubscribe() (which waits for a call in progress).
  using wake_fn = void (*)(void* arg);
  // Whether this clock reads the steady clock's time (timers then wait on the kernel).
  virtual bool steady_time() const { return false; }
  virtual std::uint64_t subscribe(wake_fn, void*) const { return 0; }
  virtual void unsubscribe(std::uint64_t) const {}
};

// The process-wide steady clock.
const clock& steady();

// A clock that moves only when told to (tests).
class manual_clock final : public clock {
 public:
  explicit manual_clock(time_point start = time_point{} + std::chrono::hours(1))
      : ns_(start.time_since_epoch().count()) {}
  time_point now() const override { return time_point(duration(ns_.load())); }
  // Moves the clock and wakes the timers waiting on it.
  void advance(duration d) {
    ns_.fetch_add(d.count());
    std::lock_guard lock(m_);
    for (const auto& [id, w] : waiters_) w.first(w.second);
  }
  std::uint64_t subscribe(wake_fn f, void* arg) const override {
    std::lock_guard lock(m_);
    waiters_.emplace(++next_, std::pair{f, arg});
    return next_;
  }
  void unsubscribe(std::uint64_t id) const override {
    std::lock_guard lock(m_);
    waiters_.erase(id);
  }

 private:
  std::atomic<std::int64_t> ns_;
  mutable std::mutex m_;
  mutable std::uint64_t next_ = 0;
  mutable std::map<std::uint64_t, std::pair<wake_fn, void*>> waiters_;
};

inline double seconds_between(time_point a, time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace meridian::common
