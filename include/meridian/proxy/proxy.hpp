// The request pipeline: route -> pick -> forward -> stream -> count and log. A proxy::worker is
// owned by one worker thread and serves every client connection accepted on that thread; the
// shared_state it reads is immutable and shared by all workers.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <cstdint>
#include <memory>
#include <vector>

#include "meridian/config/config.hpp"
#include "meridian/metrics/metrics.hpp"
#include "meridian/routing/route_table.hpp"
#include "meridian/upstream/cluster.hpp"

namespace meridian::proxy {

struct shared_state {
  std::shared_ptr<const config::gateway_config> cfg;
  routing::route_table routes;
  metrics::registry* metrics = nullptr;
  std::vector<std::vector<upstream::endpoint_info>> endpoints;

  shared_state(std::shared_ptr<const config::gateway_config> c, metrics::registry* m,
               std::vector<std::vector<upstream::endpoint_info>> eps)
      : cfg(std::move(c)), routes(*cfg), metrics(m), endpoints(std::move(eps)) {}
};

class worker {
 public:
  worker(boost::asio::io_context& io, unsigned index, std::shared_ptr<const shared_state> shared,
         std::uint64_t seed);
  ~worker();
  worker(const worker&) = delete;
  worker& operator=(const worker&) = delete;

  // Takes ownership of an accepted client connection. Worker thread only.
  void serve(boost::asio::ip::tcp::socket socket);
  // Stop reusing client connections and close idle ones; in-flight requests finish. Worker thread.
  void start_drain();
  // Close every connection now (drain timeout). Worker thread.
  void abort_all();
  // Open client connections on this worker (any thread may read).
  std::size_t connections() const;

  upstream::worker_upstreams& upstreams();
  boost::asio::io_context& io();

  struct impl;

 private:
  std::unique_ptr<impl> impl_;
};

}  // namespace meridian::proxy
