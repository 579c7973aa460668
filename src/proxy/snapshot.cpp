#include "meridian/proxy/snapshot.hpp"

#include "proxy/object_size.hpp"

namespace meridian::proxy {

snapshot::snapshot(std::shared_ptr<const config::gateway_config> c,
                   std::shared_ptr<const upstream::topology> t, unsigned n_workers,
                   std::shared_ptr<object_sizes> known_sizes,
                   std::shared_ptr<const tenants::table> tenant_table)
    : cfg(std::move(c)),
      routes(*cfg),
      topo(std::move(t)),
      workers(n_workers ? n_workers : 1),
      sizes(known_sizes ? std::move(known_sizes) : std::make_shared<object_sizes>()),
      tenants(std::move(tenant_table)) {}

metrics::layout metrics_layout(const config::gateway_config& cfg) {
  metrics::layout l;
  for (const auto& r : cfg.routes) {
    l.routes.push_back(r.name);
    l.route_clusters.push_back(r.cluster);
  }
  for (const auto& c : cfg.clusters) {
    l.clusters.push_back(c.name);
    l.tls_clusters.push_back(c.tls.has_value());
    auto& eps = l.endpoints.emplace_back();
    for (const auto& e : c.endpoints) eps.push_back(e.address.to_string());
  }
  for (const auto& li : cfg.listeners) l.listeners.push_back(li.name);
  return l;
}

}  // namespace meridian::proxy
