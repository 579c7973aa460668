// What the control thread's probes learn about each endpoint (RTT, health, scraped load, models
// served), published to the workers as an immutable snapshot. Built on the control thread;
// read-only once published.
#pragma once

#include <algorithm>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "meridian/common/clock.hpp"

namespace meridian::upstream {

struct topology;

struct probe_signals {
  // Active probe: verdict from rise/fall thresholds, RTT in seconds (-1 when unknown).
  bool probed = false;
  bool healthy = true;
  std::uint64_t successes = 0;  // a success after an ejection lifts it
  // A probe's time (request written -> response head) is the path's round trip plus the
  // server's wait before answering. A busy server sometimes answers at once and a long path
  // never does, so the path is the minimum over the recent window, and the server's wait the
  // rest of the smoothed time. The TCP connect time is kept beside them but is no path figure:
  // wherever TCP ends before the server (a sidecar, an L4 balancer, a relay) it times only the
  // hop to that.
  double rtt = -1;      // the path: windowed minimum of probe times
  double wait = -1;     // the server: PeakEWMA of probe times less the path
  double connect = -1;  // last TCP connect time
  common::time_point probed_at{};
  // Backend-reported load from its /metrics; -1 for a signal it does not export.
  bool load_known = false;     // a scrape succeeded at least once
  bool scrape_failed = false;  // the last scrape failed (the reading below is the last good one)
  double waiting = -1, running = -1, kv_usage = -1;
  common::time_point scraped_at{};
  // Restarts seen: its process start time changed between scrapes (its caches are gone).
  double started = -1;
  std::uint32_t restarts = 0;
  // Models it serves (sorted ids) from its /v1/models; null while unknown.
  std::shared_ptr<const std::vector<std::string>> models;
};

struct signals {
  std::shared_ptr<const topology> topo;              // what the indices refer to
  std::vector<std::vector<probe_signals>> clusters;  // [cluster][endpoint slot]
};

// Whether `models` (sorted; null = unknown, which serves anything) lists `model`.
inline bool serves(const std::vector<std::string>* models, std::string_view model) {
  if (models == nullptr) return true;
  return std::binary_search(models->begin(), models->end(), model,
                            [](std::string_view a, std::string_view b) { return a < b; });
}

}  // namespace meridian::upstream
