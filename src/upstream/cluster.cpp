#include "meridian/upstream/cluster.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include "meridian/common/log.hpp"
#include "meridian/tls/client.hpp"

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

std::shared_ptr<tls::peer> identity_table::tls_peer_for(endpoint_id id) {
  auto& slot = peers_[id];
  auto p = slot.lock();
  if (!p) {
    p = std::make_shared<tls::peer>();
    slot = p;
  }
  return p;
}

std::shared_ptr<const tls::client_context> identity_table::tls_for(
    const std::string& cluster, const config::upstream_tls_config& cfg) {
  auto& ctx = tls_[cluster];
  if (!ctx || ctx->config() != cfg) ctx = std::make_shared<const tls::client_context>(cluster, cfg);
  return ctx;
}

tls_contexts load_client_tls(const config::gateway_config& cfg) {
  tls_contexts out;
  for (const auto& c : cfg.clusters)
    if (c.tls) out[c.name] = std::make_shared<const tls::client_context>(c.name, *c.tls);
  return out;
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
        if (cc.tls) {
          // The name sent and verified: the configured one, else the name the endpoint was
          // configured by, else its address (verified against the certificate's IP entries).
          info.tls.context = ids.tls_for(cc.name, *cc.tls);
          info.tls.name = !cc.tls->sni.empty() ? cc.tls->sni : literal ? a.to_string()
                                                                       : e.address.host;
          info.tls.peer = ids.tls_peer_for(info.id);
        }
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

std::string tls_metrics_text(const topology& t) {
  std::string hs, err;
  for (const auto& c : t.clusters) {
    for (const auto& e : c.endpoints) {
      if (!e.tls.peer) continue;
      auto v = e.tls.peer->read();
      auto labels = common::cat("cluster=\"", c.name, "\",endpoint=\"", e.address, '"');
      hs += common::cat("meridian_upstream_tls_endpoint_handshakes_total{", labels,
                        ",resumed=\"false\"} ", v.full, '\n');
      hs += common::cat("meridian_upstream_tls_endpoint_handshakes_total{", labels,
                        ",resumed=\"true\"} ", v.resumed, '\n');
      for (std::size_t r = 0; r < v.failed.size(); ++r)
        if (v.failed[r] > 0)
          err += common::cat("meridian_upstream_tls_errors_total{", labels, ",reason=\"",
                             tls::to_string(static_cast<tls::failure>(r)), "\"} ", v.failed[r],
                             '\n');
    }
  }
  if (hs.empty()) return {};
  return common::cat(
      "# HELP meridian_upstream_tls_endpoint_handshakes_total TLS handshakes completed with an "
      "endpoint (proxied requests and probes), full or resuming a session\n"
      "# TYPE meridian_upstream_tls_endpoint_handshakes_total counter\n",
      hs,
      "# HELP meridian_upstream_tls_errors_total TLS handshakes with an endpoint that failed, by "
      "reason (bad_certificate: it did not verify)\n"
      "# TYPE meridian_upstream_tls_errors_total counter\n",
      err);
}

}  // namespace meridian::upstream
