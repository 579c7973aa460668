// Per-worker, per-endpoint live numbers that balancers read. Owned and written by one worker
// thread; the control thread only reads the atomics for /admin/endpoints and metrics.
#pragma once

#include <atomic>
#include <cstdint>

namespace meridian::upstream {

struct endpoint_stats {
  std::uint32_t in_flight = 0;  // requests sent and not yet finished, on this worker
  bool healthy = true;          // false while ejected after consecutive connect failures
  std::uint32_t consecutive_failures = 0;
  std::int64_t ejected_until_ns = 0;  // steady clock
  // Mirrors for readers on other threads (admin); relaxed stores by the owning worker.
  std::atomic<std::uint32_t> in_flight_shared{0};
  std::atomic<bool> healthy_shared{true};
  std::atomic<std::uint64_t> requests_total{0};
  std::atomic<std::uint64_t> failures_total{0};
};

}  // namespace meridian::upstream
