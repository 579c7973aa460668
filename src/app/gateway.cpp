#include "app/gateway.hpp"

#include <prometheus/gauge.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <csignal>
#include <functional>

#include "meridian/admin/admin.hpp"
#include "meridian/common/log.hpp"
#include "meridian/common/random.hpp"
#include "meridian/frontend/listener.hpp"
#include "meridian/metrics/metrics.hpp"
#include "meridian/proxy/proxy.hpp"
#include "meridian/runtime/workers.hpp"
#include "meridian/upstream/cluster.hpp"

namespace meridian::app {

namespace asio = boost::asio;
using common::log;
using common::log_level;

namespace {
metrics::layout layout_of(const config::gateway_config& cfg) {
  metrics::layout l;
  for (const auto& r : cfg.routes) {
    l.routes.push_back(r.name);
    l.route_clusters.push_back(r.cluster);
  }
  for (const auto& c : cfg.clusters) {
    l.clusters.push_back(c.name);
    auto& eps = l.endpoints.emplace_back();
    for (const auto& e : c.endpoints) eps.push_back(e.address.to_string());
  }
  for (const auto& li : cfg.listeners) l.listeners.push_back(li.name);
  return l;
}
}  // namespace

int run_gateway(std::shared_ptr<const config::gateway_config> cfg, runtime::io_kind io,
                const std::string& io_reason) {
  metrics::registry registry(layout_of(*cfg));
  registry.set_io_backend(runtime::to_string(io));
  auto endpoints = upstream::resolve_endpoints(*cfg);
  auto shared = std::make_shared<const proxy::shared_state>(cfg, &registry, endpoints);

  unsigned n = cfg->workers ? cfg->workers : runtime::default_worker_count();
  registry.set_workers(n);
  std::vector<std::unique_ptr<proxy::worker>> workers;
  auto pool = std::make_unique<runtime::worker_pool>(n);
  std::uint64_t seed = common::os_seed();
  for (unsigned i = 0; i < n; ++i)
    workers.push_back(std::make_unique<proxy::worker>(pool->io(i), i, shared, seed + i));
  std::vector<proxy::worker*> raw;
  std::vector<const upstream::worker_upstreams*> ups;
  for (auto& w : workers) {
    raw.push_back(w.get());
    ups.push_back(&w->upstreams());
  }
  frontend::listener_set listeners(*cfg, raw);

  asio::io_context control(1);
  std::atomic<bool> draining{false};
  std::function<void()> begin_drain;
  admin::context actx;
  actx.cfg = cfg.get();
  actx.metrics = &registry;
  actx.workers = ups;
  actx.draining = &draining;
  actx.io_backend = std::string(runtime::to_string(io));
  actx.on_drain = [&] { begin_drain(); };
  admin::server admin_server(control, cfg->admin.address, actx);

  log(log_level::info, "runtime", "meridian ", MERIDIAN_VERSION, " starting: io backend ",
      runtime::to_string(io), " (", io_reason, "), ", n, " worker", n == 1 ? "" : "s");
  for (const auto& b : listeners.bound()) log(log_level::info, "frontend", "listener ", b);
  log(log_level::info, "admin", "admin listener ", admin_server.bound());

  asio::steady_timer drain_timer(control);
  auto drain_deadline = std::chrono::steady_clock::time_point::max();
  std::function<void()> poll_drain;
  auto finish = [&] {
    for (auto& w : workers) asio::post(w->io(), [w = w.get()] { w->abort_all(); });
    admin_server.close();
    drain_timer.expires_after(std::chrono::milliseconds(20));
    drain_timer.async_wait([&](boost::system::error_code) {
      pool->stop();
      control.stop();
    });
  };
  poll_drain = [&] {
    std::size_t open = 0;
    for (auto& w : workers) open += w->connections();
    if (open == 0 || std::chrono::steady_clock::now() >= drain_deadline) {
      if (open)
        log(log_level::warn, "runtime", "drain timeout: closing ", open, " connections");
      else
        log(log_level::info, "runtime", "drained");
      finish();
      return;
    }
    drain_timer.expires_after(std::chrono::milliseconds(20));
    drain_timer.async_wait([&](boost::system::error_code ec) {
      if (!ec) poll_drain();
    });
  };
  begin_drain = [&] {
    if (draining.exchange(true)) return;
    registry.draining().Set(1);
    log(log_level::info, "runtime", "draining: readiness now fails; listeners close in ",
        std::chrono::duration<double>(cfg->drain.shutdown_delay).count(), "s");
    drain_timer.expires_after(cfg->drain.shutdown_delay);
    drain_timer.async_wait([&](boost::system::error_code ec) {
      if (ec) return;
      listeners.close();
      for (auto& w : workers) asio::post(w->io(), [w = w.get()] { w->start_drain(); });
      drain_deadline = std::chrono::steady_clock::now() + cfg->drain.timeout;
      poll_drain();
    });
  };

  asio::signal_set signals(control, SIGTERM, SIGINT);
  std::function<void(const boost::system::error_code&, int)> on_signal =
      [&](const boost::system::error_code& ec, int sig) {
        if (ec) return;
        if (draining.load()) {
          log(log_level::warn, "runtime", "second signal: stopping now");
          finish();
          return;
        }
        log(log_level::info, "runtime", "signal ", sig, " received");
        begin_drain();
        signals.async_wait(on_signal);
      };
  signals.async_wait(on_signal);
  ::signal(SIGPIPE, SIG_IGN);

  pool->start();
  listeners.start();
  admin_server.start();
  control.run();
  pool->join();
  pool.reset();  // destroys the io_contexts (and pending sessions) while workers still exist
  log(log_level::info, "runtime", "stopped");
  return 0;
}

}  // namespace meridian::app
