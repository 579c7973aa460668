// A limit with continuous refill: a bucket that holds one window's allowance and refills it
// evenly over the window (GCRA: one "theoretical arrival time" in an atomic, so the workers that
// share a tenant take from it without a lock). Times come from the caller's clock.
#pragma once

#include <atomic>
#include <cstdint>

#include "meridian/common/clock.hpp"

namespace meridian::tenants {

class limiter {
 public:
  // `limit` units per `window` (> 0 both).
  limiter(double limit, common::duration window);
  limiter(const limiter&) = delete;
  limiter& operator=(const limiter&) = delete;

  struct verdict {
    bool allowed = false;
    common::duration retry_after{};  // denied: until `cost` fits
  };
  // Charges `cost` when the bucket holds it, or when the bucket is full (a cost larger than the
  // whole bucket then leaves it in debt); otherwise charges nothing.
  verdict take(double cost, common::time_point now);
  // Settles an earlier charge: `delta` > 0 charges more (even past empty: the debt delays the
  // next requests), < 0 gives back.
  void adjust(double delta, common::time_point now);
  // What the bucket holds now, and how long until it is full again.
  double remaining(common::time_point now) const;
  common::duration until_full(common::time_point now) const;
  // The limit in force: the configured one times this replica's share of it.
  double limit() const { return limit_.load(std::memory_order_relaxed); }
  common::duration window() const { return window_; }
  // A new limit (this replica's share changed), refilling at its own rate from now on. What was
  // used stays used, in units: a smaller limit may leave the bucket in debt, so shares moving
  // between replicas move their headroom without adding to it.
  void set_limit(double limit, common::time_point now);

 private:
  static std::int64_t ns(common::time_point t);
  std::atomic<double> limit_;
  common::duration window_;
  std::atomic<double> ns_per_unit_;
  // When the bucket is full again, in ns of the clock's epoch; the bucket lacks
  // (tat - now) / ns_per_unit units. Starts full.
  std::atomic<std::int64_t> tat_{0};
};

}  // namespace meridian::tenants
