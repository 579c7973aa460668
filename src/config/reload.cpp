// What a reload may change: the parts of a config the running gateway can adopt from a new
// snapshot (endpoints included: they come and go as with DNS), and the parts (sockets, threads,
// the clusters and routes that metrics are laid out by, the probe loops' settings) that need a
// restart.
#include "meridian/common/log.hpp"
#include "meridian/config/config.hpp"

namespace meridian::config {

std::string restart_needed(const gateway_config& a, const gateway_config& b) {
  // A listener's TLS settings and certificates are reloaded; its name, address and whether it
  // speaks TLS are not.
  if (a.listeners.size() != b.listeners.size()) return "listeners changed";
  for (std::size_t i = 0; i < a.listeners.size(); ++i) {
    const auto& x = a.listeners[i];
    const auto& y = b.listeners[i];
    if (x.name != y.name || x.address != y.address || x.tls.has_value() != y.tls.has_value())
      return "listeners changed";
  }
  if (a.admin != b.admin) return "admin changed";
  if (a.workers != b.workers) return "workers changed";
  if (a.io != b.io) return "io_backend changed";
  if (a.zone != b.zone) return "zone changed";
  if (a.drain != b.drain) return "drain changed";
  if (a.access_log != b.access_log) return "access_log changed";
  if (a.dns != b.dns) return "dns changed";
  if (a.tenants.redis != b.tenants.redis) return "tenants.redis changed";
  if (a.clusters.size() != b.clusters.size()) return "clusters were added or removed";
  for (std::size_t i = 0; i < a.clusters.size(); ++i) {
    const auto& x = a.clusters[i];
    const auto& y = b.clusters[i];
    auto where = [&](const char* what) {
      return common::cat("clusters[", i, "].", what, " changed");
    };
    if (x.name != y.name) return where("name");
    if (x.kind != y.kind) return where("kind");
    if (x.probe != y.probe) return where("probe");
    if (x.load_metrics != y.load_metrics) return where("load_metrics");
    if (x.models != y.models) return where("models");
  }
  if (a.routes.size() != b.routes.size()) return "routes were added or removed";
  for (std::size_t i = 0; i < a.routes.size(); ++i) {
    if (a.routes[i].name != b.routes[i].name) return common::cat("routes[", i, "].name changed");
    if (a.routes[i].cluster != b.routes[i].cluster)
      return common::cat("routes[", i, "].cluster changed");
  }
  return {};
}

}  // namespace meridian::config
