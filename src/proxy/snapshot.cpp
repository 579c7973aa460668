#include "meridian/proxy/snapshot.hpp"

namespace meridian::proxy {

metrics::layout metrics_layout(const config::gateway_config& cfg) {
  metrics::layout l;
  for (const auto& r : cfg.routes) {
    l.routes.push_back(r.name);
    l.route_clusters.push_back(r.cluster);
  }
  for (const auto& c : cfg.clusters) {
    l.clusters.push_back(c.name);
    auto& eps = l.endpoints.emplace_back();
    for (const auto& e : c.endpoints) eps.push_back(e.address.to_string());
  }
  for (const auto& li : cfg.listeners) l.listeners.push_back(li.name);
  return l;
}

}  // namespace meridian::proxy
