#include "meridian/upstream/cluster.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <stdexcept>

#include "meridian/common/log.hpp"

namespace meridian::upstream {

std::vector<std::vector<endpoint_info>> resolve_endpoints(const config::gateway_config& cfg) {
  boost::asio::io_context io;
  boost::asio::ip::tcp::resolver resolver(io);
  std::vector<std::vector<endpoint_info>> out;
  for (const auto& c : cfg.clusters) {
    auto& eps = out.emplace_back();
    for (const auto& e : c.endpoints) {
      boost::system::error_code ec;
      auto results = resolver.resolve(e.address.host, std::to_string(e.address.port), ec);
      if (ec || results.empty())
        throw std::runtime_error(
            common::cat("cluster '", c.name, "': endpoint ", e.address.to_string(),
                        " does not resolve: ", ec ? ec.message() : "no address"));
      eps.push_back({e.address.to_string(), e.zone, results.begin()->endpoint()});
    }
  }
  return out;
}

}  // namespace meridian::upstream
