#include "meridian/upstream/cluster.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include "meridian/common/log.hpp"

namespace meridian::upstream {

namespace ip = boost::asio::ip;

namespace {
bool is_literal(const std::string& host) {
  boost::system::error_code ec;
  ip::make_address(host, ec);
  return !ec;
}

std::string label_of(const ip::address& a, std::uint16_t port) {
  return a.is_v6() ? common::cat('[', a.to_string(), "]:", port)
                   : common::cat(a.to_string(), ':', port);
}

resolution system_lookup(const std::string& host) {
  boost::asio::io_context io;
  ip::tcp::resolver resolver(io);
  boost::system::error_code ec;
  auto results = resolver.resolve(host, "", ec);
  std::vector<ip::address> found;
  for (const auto& e : results) found.push_back(e.endpoint().address());
  return resolution_of(ec, std::move(found));
}
}  // namespace

resolution resolution_of(const boost::system::error_code& ec, std::vector<ip::address> found) {
  resolution r;
  if (ec) {
    r.error = ec.message();
    return r;
  }
  r.addresses = std::move(found);
  if (r.addresses.empty()) r.error = "no address";
  return r;
}

std::shared_ptr<load_board> identity_table::board_for(endpoint_id id, unsigned workers) {
  auto& slot = boards_[id];
  if (auto b = slot.lock()) return b;
  std::erase_if(boards_, [](const auto& kv) { return kv.second.expired(); });
  auto b = std::make_shared<load_board>(workers);
  boards_[id] = b;
  return b;
}

endpoint_id identity_table::id_for(const std::string& cluster, const std::string& address) {
  auto [it, inserted] = ids_.try_emplace({cluster, address}, next_);
  if (inserted) ++next_;
  return it->second;
}

std::vector<std::string> hostnames(const config::gateway_config& cfg) {
  std::set<std::string> names;
  for (const auto& c : cfg.clusters)
    for (const auto& e : c.endpoints)
      if (!is_literal(e.address.host)) names.insert(e.address.host);
  return {names.begin(), names.end()};
}

resolution lookup_hosts_file(const std::string& path, const std::string& host) {
  resolution r;
  std::ifstream in(path);
  if (!in) {
    r.error = common::cat("cannot read hosts file '", path, "'");
    return r;
  }
  std::string line;
  while (std::getline(in, line)) {
    line = line.substr(0, line.find('#'));
    std::istringstream words(line);
    std::string address, name;
    if (!(words >> address)) continue;
    boost::system::error_code ec;
    auto a = ip::make_address(address, ec);
    if (ec) continue;
    while (words >> name)
      if (name == host) r.addresses.push_back(a);
  }
  if (r.addresses.empty()) r.error = common::cat("not in hosts file '", path, "'");
  return r;
}

name_table resolve_names(const config::gateway_config& cfg) {
  name_table names;
  for (const auto& host : hostnames(cfg))
    names[host] = cfg.dns.hosts_file.empty() ? system_lookup(host)
                                             : lookup_hosts_file(cfg.dns.hosts_file, host);
  return names;
}

std::shared_ptr<const topology> build_topology(const config::gateway_config& cfg,
                                               const name_table& names, identity_table& ids,
                                               metrics::registry& reg) {
  auto topo = std::make_shared<topology>();
  for (std::size_t c = 0; c < cfg.clusters.size(); ++c) {
    const auto& cc = cfg.clusters[c];
    auto& ci = topo->clusters.emplace_back();
    ci.name = cc.name;
    ci.pool = cc.pool;
    ci.latency = cc.latency;
    ci.outlier = cc.outlier;
    ci.prefix = cc.prefix_affinity;
    std::set<std::string> seen;  // one endpoint per address, whichever names lead to it
    for (const auto& e : cc.endpoints) {
      std::vector<ip::address> addresses;
      bool literal = is_literal(e.address.host);
      if (literal) {
        addresses.push_back(ip::make_address(e.address.host));
      } else if (auto it = names.find(e.address.host); it != names.end()) {
        addresses = it->second.addresses;
        std::sort(addresses.begin(), addresses.end());
      }
      for (const auto& a : addresses) {
        auto label = label_of(a, e.address.port);
        if (!seen.insert(label).second) continue;
        endpoint_info info;
        info.id = ids.id_for(cc.name, label);
        info.cluster = c;
        info.address = label;
        info.host = literal ? "" : e.address.host;
        info.zone = e.zone;
        info.local_zone = cfg.zone.empty() || e.zone.empty() || e.zone == cfg.zone;
        info.resolved = {a, e.address.port};
        info.series = reg.endpoint(c, label);
        info.board = ids.board_for(info.id, reg.workers());
        ci.endpoints.push_back(std::move(info));
      }
    }
  }
  return topo;
}

std::shared_ptr<const topology> resolve_topology(const config::gateway_config& cfg,
                                                 identity_table& ids, metrics::registry& reg) {
  auto names = resolve_names(cfg);
  for (const auto& [host, r] : names)
    if (!r.error.empty())
      common::log(common::log_level::warn, "dns", "endpoint host '", host, "' does not resolve (",
                  r.error, "); retrying every ",
                  std::chrono::duration_cast<std::chrono::milliseconds>(cfg.dns.refresh).count(),
                  " ms");
  return build_topology(cfg, names, ids, reg);
}

metrics::endpoint_set series_of(const topology& t) {
  metrics::endpoint_set out(t.clusters.size());
  for (std::size_t c = 0; c < t.clusters.size(); ++c)
    for (const auto& e : t.clusters[c].endpoints) out[c].push_back(e.series);
  return out;
}

}  // namespace meridian::upstream
