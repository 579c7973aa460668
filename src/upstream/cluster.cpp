#include "meridian/upstream/cluster.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <stdexcept>

#include "meridian/common/log.hpp"

namespace meridian::upstream {

endpoint_id identity_table::id_for(const std::string& cluster, const std::string& address) {
  auto [it, inserted] = ids_.try_emplace({cluster, address}, next_);
  if (inserted) ++next_;
  return it->second;
}

std::shared_ptr<const topology> resolve_topology(const config::gateway_config& cfg,
                                                 identity_table& ids) {
  boost::asio::io_context io;
  boost::asio::ip::tcp::resolver resolver(io);
  auto topo = std::make_shared<topology>();
  for (const auto& c : cfg.clusters) {
    auto& ci = topo->clusters.emplace_back();
    ci.name = c.name;
    ci.pool = c.pool;
    ci.latency = c.latency;
    ci.outlier = c.outlier;
    ci.prefix = c.prefix_affinity;
    for (const auto& e : c.endpoints) {
      boost::system::error_code ec;
      auto results = resolver.resolve(e.address.host, std::to_string(e.address.port), ec);
      if (ec || results.empty())
        throw std::runtime_error(
            common::cat("cluster '", c.name, "': endpoint ", e.address.to_string(),
                        " does not resolve: ", ec ? ec.message() : "no address"));
      auto address = e.address.to_string();
      bool local = cfg.zone.empty() || e.zone.empty() || e.zone == cfg.zone;
      ci.endpoints.push_back({ids.id_for(c.name, address), topo->clusters.size() - 1,
                              ci.endpoints.size(), address, e.zone, local,
                              results.begin()->endpoint()});
    }
  }
  return topo;
}

}  // namespace meridian::upstream
