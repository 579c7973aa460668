// The control thread's view of every endpoint: active health and RTT probes, scrapes of the
// backends' own load metrics, and /v1/models discovery. After each result it publishes a fresh
// upstream::signals snapshot to the workers and updates the probe metrics. Created on the main
// thread; runs and is read (admin) only on the control thread.
#pragma once

#include <boost/asio/io_context.hpp>

#include <functional>
#include <memory>
#include <string>

#include "meridian/common/clock.hpp"
#include "meridian/config/config.hpp"
#include "meridian/metrics/metrics.hpp"
#include "meridian/upstream/cluster.hpp"
#include "meridian/upstream/signals.hpp"

namespace meridian::probe {

using publisher = std::function<void(std::shared_ptr<const upstream::signals>)>;

// The last failure of each kind for one endpoint, for /admin/endpoints ("" when none).
struct endpoint_errors {
  std::string probe, scrape, models;
};

class prober {
 public:
  prober(boost::asio::io_context& io, std::shared_ptr<const config::gateway_config> cfg,
         std::shared_ptr<const upstream::topology> topo, metrics::registry& reg, publisher pub,
         std::uint64_t seed, const common::clock& clock = common::steady());
  ~prober();
  prober(const prober&) = delete;
  prober& operator=(const prober&) = delete;

  // Starts every enabled probe, scrape and discovery loop, spread over their first interval.
  void start();
  // The endpoints are now those of `topo` (a reload, with its config, or a DNS change): the ones
  // that stay keep their readings, new ones are probed (healthy until found otherwise), the others'
  // loops end. What current() returns follows at once, and a snapshot is published.
  void set_topology(std::shared_ptr<const config::gateway_config> cfg,
                    std::shared_ptr<const upstream::topology> topo);
  // Cancels the loops' timers; calls in flight end at their own timeouts.
  void stop();
  // What was last published (never null).
  std::shared_ptr<const upstream::signals> current() const;
  // The last errors of the e-th endpoint of a cluster, in current()'s topology.
  const endpoint_errors& errors(std::size_t cluster, std::size_t endpoint) const;

  struct impl;

 private:
  std::shared_ptr<impl> impl_;
};

}  // namespace meridian::probe
