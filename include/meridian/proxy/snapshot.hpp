// What the control thread publishes to every proxy worker: the config, its route table and the
// resolved upstream topology, immutable once built. Workers adopt a new one between requests.
// Also the metrics layout that goes with a config.
#pragma once

#include <memory>

#include "meridian/config/config.hpp"
#include "meridian/metrics/metrics.hpp"
#include "meridian/routing/route_table.hpp"
#include "meridian/upstream/cluster.hpp"

namespace meridian::proxy {

struct snapshot {
  std::shared_ptr<const config::gateway_config> cfg;
  routing::route_table routes;
  std::shared_ptr<const upstream::topology> topo;
  unsigned workers = 1;  // how many share the per-gateway figures (the retry budget's floor)

  snapshot(std::shared_ptr<const config::gateway_config> c,
           std::shared_ptr<const upstream::topology> t, unsigned n_workers = 1)
      : cfg(std::move(c)), routes(*cfg), topo(std::move(t)), workers(n_workers ? n_workers : 1) {}
};

// The bounded label sets of the metrics a config's routes, clusters and endpoints produce.
metrics::layout metrics_layout(const config::gateway_config& cfg);

}  // namespace meridian::proxy
