// Tenant limits shared by every gateway replica through Redis, with no round trip on the request
// path: each replica enforces its share of each limit locally (tenants::limiter at the share's
// rate), and a thread of its own tells Redis every sync interval how much this replica's clients
// asked of each limit, in one atomic script per limit that returns what every live replica asked;
// the shares follow demand. When Redis is down or slow no request waits: each replica falls back
// to 1 / the replicas it last saw, says so in the log and in meridian_tenant_store_up, and picks
// up again at the next sync after Redis returns.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "meridian/config/config.hpp"
#include "meridian/tenants/tenants.hpp"

namespace meridian::tenants {

// This replica's share of a limit: its demand `mine` (units per second) against `total`, what
// the `replicas` live replicas (this one included) asked together. Every replica keeps a floor
// of 5% of an even split (so an idle one can still serve its first requests), and the shares of
// replicas that compute from the same figures sum to one.
double share_of(double mine, double total, unsigned replicas);

class shared_limits {
 public:
  // Starts the sync thread (it connects on its own; nothing here waits on Redis).
  explicit shared_limits(const config::tenants_config::redis_store& store);
  ~shared_limits();
  shared_limits(const shared_limits&) = delete;
  shared_limits& operator=(const shared_limits&) = delete;

  // The tenants whose limits are shared from now on (reloads, keys-file changes). Any thread.
  void set_table(std::shared_ptr<const table> t);
  // 1 while the last sync reached Redis, else 0; the replicas it saw (this one included).
  int store_up() const { return up_.load(std::memory_order_relaxed) ? 1 : 0; }
  unsigned replicas() const { return replicas_.load(std::memory_order_relaxed); }
  // meridian_tenant_store_up, meridian_tenant_replicas and meridian_tenant_share{tenant,limit}.
  std::string metrics_text() const;

 private:
  struct connection;
  void run();
  bool sync(connection& c, const table& t, double interval_s);
  void fall_back(const table& t);

  config::tenants_config::redis_store cfg_;
  std::string id_;  // this replica's name in Redis (random, per process)
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::shared_ptr<const table> table_;
  std::atomic<bool> up_{false};
  std::atomic<unsigned> replicas_{1};
  std::thread thread_;
};

}  // namespace meridian::tenants
