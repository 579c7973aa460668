// What the control thread publishes to every proxy worker: the config, its route table and the
// resolved upstream topology, immutable once built. Workers adopt a new one between requests.
// Also the metrics layout that goes with a config.
#pragma once

#include <memory>

#include "meridian/config/config.hpp"
#include "meridian/metrics/metrics.hpp"
#include "meridian/routing/route_table.hpp"
#include "meridian/tenants/tenants.hpp"
#include "meridian/upstream/cluster.hpp"

namespace meridian::proxy {

class object_sizes;

struct snapshot {
  std::shared_ptr<const config::gateway_config> cfg;
  routing::route_table routes;
  std::shared_ptr<const upstream::topology> topo;
  unsigned workers = 1;  // how many share the per-gateway figures (the retry budget's floor)
  // Storage objects' sizes seen in responses, shared by every worker and kept across snapshots
  // (the one thing here that changes: a table safe for any thread, see object_size.hpp).
  std::shared_ptr<object_sizes> sizes;
  // The tenants of the keys file (tenants configured), their shared state with them; null: off.
  std::shared_ptr<const tenants::table> tenants;

  // `known_sizes`: the table to keep using (null: a new one). `tenant_table`: the keys file's
  // tenants where the config has a tenants section.
  snapshot(std::shared_ptr<const config::gateway_config> c,
           std::shared_ptr<const upstream::topology> t, unsigned n_workers = 1,
           std::shared_ptr<object_sizes> known_sizes = nullptr,
           std::shared_ptr<const tenants::table> tenant_table = nullptr);
};

// The bounded label sets of the metrics a config's routes, clusters and endpoints produce.
metrics::layout metrics_layout(const config::gateway_config& cfg);

}  // namespace meridian::proxy
