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
  double rtt = -1;              // PeakEWMA of the probe request's time
  double rtt_min = -1;          // minimum over the recent window
  double connect = -1;          // last TCP connect time
  common::time_point probed_at{};
  // Backend-reported load from its /metrics; -1 for a signal it does not export.
  bool load_known = false;     // a scrape succeeded at least once
  bool scrape_failed = false;  // the last scrape failed (the reading below is the last good one)
  double waiting = -1, running = -1, kv_usage = -1;
  common::time_point scraped_at{};
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
