// Re-resolving the endpoints' hostnames (control thread): every dns.refresh, each hostname of
// the config in force is looked up again (the hosts file when configured, else the system
// resolver, off the control thread) and the results are handed over; the caller turns them into
// a new topology when they changed. All A/AAAA records of a name become endpoints.
#pragma once

#include <boost/asio/io_context.hpp>

#include <functional>
#include <memory>

#include "meridian/config/config.hpp"
#include "meridian/upstream/cluster.hpp"

namespace meridian::probe {

class dns_refresh {
 public:
  // A round's results, with the config whose names they are (a reload during the round makes
  // them stale: the caller drops them).
  using handler =
      std::function<void(std::shared_ptr<const config::gateway_config>, upstream::name_table)>;
  dns_refresh(boost::asio::io_context& io, std::shared_ptr<const config::gateway_config> cfg,
              handler on_result);
  ~dns_refresh();
  dns_refresh(const dns_refresh&) = delete;
  dns_refresh& operator=(const dns_refresh&) = delete;

  // Starts the loop; it does nothing while the config names no hostname.
  void start();
  // The config in force from now on (a reload): its names, refresh and hosts file.
  void set_config(std::shared_ptr<const config::gateway_config> cfg);
  void stop();

  struct impl;

 private:
  std::shared_ptr<impl> impl_;
};

// Keeps what `previous` knew of a name that does not resolve now (a DNS outage must not take
// endpoints away), and drops names `fresh` no longer has. Whether the result differs from
// `previous` in any name's addresses.
bool merge_names(const upstream::name_table& previous, upstream::name_table& fresh);

}  // namespace meridian::probe
