// Clusters and endpoints as each worker sees them: resolved addresses, per-worker stats and the
// per-worker keep-alive pools. A worker_upstreams object is owned and used by one worker thread;
// the admin thread reads only the atomics inside endpoint_stats.
#pragma once

#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "meridian/config/config.hpp"
#include "meridian/upstream/stats.hpp"

namespace meridian::upstream {

struct endpoint_info {
  std::string address;  // as configured, "host:port"; also the metrics label
  std::string zone;
  boost::asio::ip::tcp::endpoint resolved;
};

// Resolves every endpoint once (main thread, at startup); throws std::runtime_error naming the
// endpoint that does not resolve.
std::vector<std::vector<endpoint_info>> resolve_endpoints(const config::gateway_config& cfg);

struct pooled_connection {
  boost::asio::ip::tcp::socket socket;
  std::chrono::steady_clock::time_point idle_since;
};

struct endpoint_state {
  const endpoint_info* info = nullptr;
  endpoint_stats stats;
  std::vector<pooled_connection> idle;  // most recently used at the back
  std::size_t open = 0;                 // idle + busy connections of this worker
};

struct cluster_state {
  const config::cluster_config* cfg = nullptr;
  std::vector<std::unique_ptr<endpoint_state>> endpoints;
  std::vector<const endpoint_stats*> stats_view;  // what balancers read
};

class worker_upstreams {
 public:
  worker_upstreams(const config::gateway_config& cfg,
                   const std::vector<std::vector<endpoint_info>>& resolved);

  cluster_state& cluster(std::size_t i) { return clusters_[i]; }
  const cluster_state& cluster(std::size_t i) const { return clusters_[i]; }
  std::size_t size() const { return clusters_.size(); }

  // A pooled connection that is still open and not past its idle timeout, or nullopt. Stale
  // ones (closed by the backend, or with unexpected bytes waiting) are closed on the way.
  std::optional<boost::asio::ip::tcp::socket> take_idle(std::size_t cluster, std::size_t endpoint,
                                                        std::chrono::steady_clock::time_point now);
  // Returns a connection after a clean, complete exchange; it is closed instead when the pool is
  // full. Every connection counted in `open` must come back through release() or closed().
  void release(std::size_t cluster, std::size_t endpoint, boost::asio::ip::tcp::socket socket,
               std::chrono::steady_clock::time_point now);
  void closed(std::size_t cluster, std::size_t endpoint);
  bool may_open(std::size_t cluster, std::size_t endpoint) const;
  void opened(std::size_t cluster, std::size_t endpoint);
  // Closes idle connections past their idle timeout or already closed by the backend.
  void prune(std::chrono::steady_clock::time_point now);
  void close_all_idle();

  // Passive health: connect failures eject an endpoint for a while on this worker.
  void record_connect_failure(std::size_t cluster, std::size_t endpoint,
                              std::chrono::steady_clock::time_point now);
  void record_success(std::size_t cluster, std::size_t endpoint);
  void refresh_health(std::chrono::steady_clock::time_point now);

 private:
  std::vector<cluster_state> clusters_;
};

}  // namespace meridian::upstream
