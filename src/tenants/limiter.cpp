#include "meridian/tenants/limiter.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>

namespace meridian::tenants {

limiter::limiter(double limit, common::duration window)
    : limit_(limit),
      window_(window),
      ns_per_unit_(static_cast<double>(
                       std::chrono::duration_cast<std::chrono::nanoseconds>(window).count()) /
                   limit) {}

std::int64_t limiter::ns(common::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

void limiter::set_limit(double limit, common::time_point now) {
  const double next_npu =
      static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(window_).count()) /
      limit;
  const double old_npu = ns_per_unit_.exchange(next_npu, std::memory_order_relaxed);
  limit_.store(limit, std::memory_order_relaxed);
  // The units used stay used: a smaller share may leave the bucket in debt, a larger one does
  // not forgive anything. So shares that move between replicas never add to what all of them
  // may take together (their buckets' headroom only moves).
  const std::int64_t n = ns(now);
  std::int64_t tat = tat_.load(std::memory_order_relaxed);
  while (tat > n) {
    const double units = static_cast<double>(tat - n) / old_npu;
    const std::int64_t next = n + static_cast<std::int64_t>(std::llround(units * next_npu));
    if (tat_.compare_exchange_weak(tat, next, std::memory_order_relaxed)) break;
  }
}

limiter::verdict limiter::take(double cost, common::time_point now) {
  const std::int64_t n = ns(now);
  const auto window_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(window_).count();
  const auto step = static_cast<std::int64_t>(
      std::llround(cost * ns_per_unit_.load(std::memory_order_relaxed)));
  std::int64_t tat = tat_.load(std::memory_order_relaxed);
  while (true) {
    const std::int64_t next = std::max(tat, n) + step;
    // More than the bucket holds: refused, unless the bucket is full (a replica's share of a
    // limit may be smaller than one request; the request then puts its bucket in debt).
    if (next - n > window_ns && tat > n) {
      verdict v;
      v.retry_after = std::chrono::nanoseconds(next - n - window_ns);
      return v;
    }
    if (tat_.compare_exchange_weak(tat, next, std::memory_order_relaxed)) return {true, {}};
  }
}

void limiter::adjust(double delta, common::time_point now) {
  const std::int64_t n = ns(now);
  const auto step = static_cast<std::int64_t>(
      std::llround(delta * ns_per_unit_.load(std::memory_order_relaxed)));
  std::int64_t tat = tat_.load(std::memory_order_relaxed);
  while (true) {
    // A refund never makes the bucket hold more than full: below `now` the debt is gone.
    const std::int64_t next = std::max(tat, n) + step;
    const std::int64_t bounded = step < 0 ? std::max(next, std::min(tat, n)) : next;
    if (tat_.compare_exchange_weak(tat, bounded, std::memory_order_relaxed)) return;
  }
}

double limiter::remaining(common::time_point now) const {
  const std::int64_t debt = std::max<std::int64_t>(0, tat_.load(std::memory_order_relaxed) - ns(now));
  return std::max(0.0, limit() - static_cast<double>(debt) /
                                     ns_per_unit_.load(std::memory_order_relaxed));
}

common::duration limiter::until_full(common::time_point now) const {
  const std::int64_t debt = std::max<std::int64_t>(0, tat_.load(std::memory_order_relaxed) - ns(now));
  return std::chrono::duration_cast<common::duration>(std::chrono::nanoseconds(debt));
}

}  // namespace meridian::tenants
