// A proxy worker: serves every client connection accepted on one worker thread with the proxy
// handler, owns that thread's upstream pools and stats, and adopts published snapshots. Built
// on the main thread; afterwards used only from its worker's thread, except connections().
#pragma once

#include <boost/asio/io_context.hpp>

#include <cstdint>
#include <memory>

#include "meridian/common/clock.hpp"
#include "meridian/http/host.hpp"
#include "meridian/metrics/metrics.hpp"
#include "meridian/proxy/snapshot.hpp"
#include "meridian/upstream/cluster.hpp"
#include "meridian/upstream/signals.hpp"

namespace meridian::proxy {

class worker final : public http::connection_host {
 public:
  worker(boost::asio::io_context& io, std::shared_ptr<const snapshot> snap,
         metrics::worker_metrics& m, std::uint64_t seed,
         const common::clock& clock = common::steady());
  ~worker();
  worker(const worker&) = delete;
  worker& operator=(const worker&) = delete;

  // What a listener needs to start a client connection on this worker (worker thread): the
  // connections' shared environment, the proxy handler, and where to track it for drain.
  http::connection_env& env() override;
  http::handler& served_by() override;
  void track(http::session& s) override;
  std::size_t max_connections() const override;
  boost::asio::io_context& io() override;
  // Adopts a new snapshot between requests (requests in flight keep theirs). Worker thread.
  void apply(std::shared_ptr<const snapshot> snap);
  // Adopts the probes' latest signals (health, RTT, scraped load, models). Worker thread.
  void apply_signals(std::shared_ptr<const upstream::signals> s);
  // Stop reusing client connections and close idle ones; in-flight requests finish. Worker thread.
  void start_drain();
  // Close every connection now (drain timeout). Worker thread.
  void abort_all();
  // Releases what this worker holds on its io_context (timers, pooled sockets); call after the
  // worker thread stopped and before the io_context is destroyed. Main thread.
  void release_io();
  // Open client connections on this worker (any thread may read).
  std::size_t connections() const;

  const upstream::worker_upstreams& upstreams() const;

  struct impl;

 private:
  std::unique_ptr<impl> impl_;
};

}  // namespace meridian::proxy
