#include "app/gateway.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <filesystem>

#include "meridian/admin/admin.hpp"
#include "meridian/common/log.hpp"
#include "meridian/common/random.hpp"
#include "meridian/frontend/listener.hpp"
#include "meridian/metrics/metrics.hpp"
#include "meridian/probe/dns.hpp"
#include "meridian/probe/prober.hpp"
#include "meridian/proxy/worker.hpp"
#include "meridian/runtime/control.hpp"
#include "meridian/runtime/publish.hpp"
#include "meridian/runtime/timer.hpp"
#include "meridian/runtime/workers.hpp"
#include "meridian/tenants/shared_limits.hpp"
#include "meridian/tenants/tenants.hpp"
#include "meridian/upstream/cluster.hpp"

namespace meridian::app {

namespace asio = boost::asio;
using common::log;
using common::log_level;

namespace {

struct gateway {
  explicit gateway(std::shared_ptr<const config::gateway_config> c, unsigned n)
      : cfg(std::move(c)), registry(proxy::metrics_layout(*cfg), n), pool(n) {}
  std::shared_ptr<const config::gateway_config> cfg;
  metrics::registry registry;
  upstream::identity_table ids;
  runtime::worker_pool pool;
  std::vector<std::unique_ptr<proxy::worker>> workers;

  void each_worker(void (proxy::worker::*fn)()) {
    for (auto& w : workers) asio::post(w->io(), [w = w.get(), fn] { (w->*fn)(); });
  }

  // For reloads and DNS changes (control thread).
  std::shared_ptr<const config::gateway_config> current;
  upstream::name_table names;  // what the endpoints' hostnames last resolved to
  std::vector<asio::io_context*> contexts;
  admin::server* admin = nullptr;
  probe::prober* prober = nullptr;
  probe::dns_refresh* dns = nullptr;
  frontend::listener_set* listeners = nullptr;
  std::shared_ptr<proxy::object_sizes> sizes;  // kept across snapshots
  std::shared_ptr<const upstream::topology> topo;  // in force (its endpoints' TLS counts)
  // The keys file's tenants in force (null: no tenants section), and the file's last change.
  std::shared_ptr<const tenants::table> tenants;
  std::filesystem::file_time_type keys_mtime{};
  std::unique_ptr<tenants::shared_limits> shared;  // tenants.redis: limits shared by replicas
};

// The tenants of `cfg`'s keys file, those of `previous` keeping their state (null where the
// config has no tenants section). Throws config::config_error for a file that does not load.
std::shared_ptr<const tenants::table> load_tenants(const config::gateway_config& cfg,
                                                   const tenants::table* previous,
                                                   std::filesystem::file_time_type& mtime) {
  if (!cfg.tenants.enabled) return nullptr;
  std::error_code ec;
  mtime = std::filesystem::last_write_time(cfg.tenants.keys_file, ec);
  return std::make_shared<const tenants::table>(config::load_keys_file(cfg.tenants.keys_file),
                                                previous, !cfg.tenants.require);
}

// Puts `cfg`, with the endpoints `names` give, in force (control thread): a new snapshot to
// every worker (requests in flight finish on the one they started with; endpoints that left
// finish theirs and close their pools), then the probes' endpoints and the exported metrics.
void adopt(gateway& g, std::shared_ptr<const config::gateway_config> cfg,
           upstream::name_table names) {
  auto topo = upstream::build_topology(*cfg, names, g.ids, g.registry);
  auto workers = static_cast<unsigned>(g.workers.size());
  auto s = std::make_shared<const proxy::snapshot>(cfg, topo, workers, g.sizes, g.tenants);
  runtime::publish<proxy::snapshot>(
      g.contexts, s, [&g](std::size_t i, auto v) { g.workers[i]->apply(std::move(v)); });
  g.registry.set_endpoints(upstream::series_of(*topo));
  g.topo = topo;
  if (g.prober) g.prober->set_topology(cfg, topo);
  if (g.dns) g.dns->set_config(cfg);
  if (g.admin && g.current != cfg) g.admin->set_config(cfg.get());
  if (g.shared) g.shared->set_table(g.tenants);
  g.current = std::move(cfg);
  g.names = std::move(names);
}

// Reload (control thread): a config that parses, validates and changes nothing that needs a
// restart is put in force, its hostnames resolved now (a name that does not resolve keeps the
// addresses it had). Anything else keeps the running config, says why (the returned reason;
// empty on success), and counts a failure.
std::string reload(gateway& g, const config_source& source) {
  std::shared_ptr<const config::gateway_config> next;
  upstream::name_table names;
  upstream::tls_contexts client_tls;
  std::shared_ptr<const tenants::table> tenant_table;
  auto keys_mtime = g.keys_mtime;
  std::string why;
  try {
    next = source();
    why = config::restart_needed(*g.current, *next);
    if (!why.empty()) why = "needs a restart: " + why;
    // Certificates, keys and CAs re-read: in force only if every one loads.
    if (why.empty()) client_tls = upstream::load_client_tls(*next);
    if (why.empty() && g.listeners) why = g.listeners->reload_tls(*next);
    if (why.empty()) names = upstream::resolve_names(*next);
    if (why.empty()) tenant_table = load_tenants(*next, g.tenants.get(), keys_mtime);
  } catch (const std::exception& e) {
    why = e.what();
  }
  g.registry.count_reload(why.empty());
  if (!why.empty()) {
    log(log_level::warn, "config", "reload failed, the running config is kept: ", why);
    return why;
  }
  probe::merge_names(g.names, names);
  g.ids.set_tls(std::move(client_tls));
  g.tenants = std::move(tenant_table);
  g.keys_mtime = keys_mtime;
  adopt(g, next, std::move(names));
  log(log_level::info, "config", "reloaded ", g.current->source);
  return {};
}

// The keys file changed on disk (control thread, every 2 s): its tenants are put in force with
// the running config, or, when it does not load, the old ones stay and a failed reload counts.
void check_keys_file(gateway& g) {
  if (!g.current->tenants.enabled) return;
  std::error_code ec;
  auto mtime = std::filesystem::last_write_time(g.current->tenants.keys_file, ec);
  if (ec || mtime == g.keys_mtime) return;
  try {
    g.tenants = load_tenants(*g.current, g.tenants.get(), g.keys_mtime);
  } catch (const std::exception& e) {
    g.keys_mtime = mtime;  // said once per change
    g.registry.count_reload(false);
    log(log_level::warn, "tenants", "the keys file changed but does not load, the tenants in force stay: ",
        e.what());
    return;
  }
  g.registry.count_reload(true);
  log(log_level::info, "tenants", "keys file re-read: ", g.tenants->all().size(), " tenants");
  adopt(g, g.current, g.names);
}

// A DNS round's results (control thread): a change in any name's addresses puts the running
// config in force again with them. A round that began before a reload resolved the old
// config's names: the reload resolved the new ones itself, and the next round follows them.
void dns_changed(gateway& g, const std::shared_ptr<const config::gateway_config>& cfg,
                 upstream::name_table names) {
  if (cfg != g.current) return;
  if (probe::merge_names(g.names, names)) adopt(g, g.current, std::move(names));
}
// Everything is closed; the operations that were pending complete (cancelled) before the
// objects they belong to go: first on the control context, then on each worker's. Then
// worker-owned I/O objects go before the io_contexts, and the io_contexts (and anything
// still parked in them) before the workers they point to. Main thread, after control.run().
void tear_down(gateway& g, runtime::control& control,
               std::unique_ptr<frontend::listener_set>& listeners) {
  control.settle();
  listeners->close();
  for (auto& w : g.workers) w->abort_all();
  g.pool.settle(std::chrono::seconds(1));
  listeners.reset();
  for (auto& w : g.workers) w->release_io();
  g.pool.destroy_contexts();
  g.workers.clear();
}

// "config meridian.yaml: 2 clusters (llama: 2 endpoints, latency_aware; ...), 3 routes".
std::string config_summary(const config::gateway_config& cfg) {
  std::string s =
      common::cat(cfg.source.empty() ? "(inline)" : cfg.source, ": ", cfg.clusters.size(),
                  " cluster", cfg.clusters.size() == 1 ? "" : "s", " (");
  for (std::size_t i = 0; i < cfg.clusters.size(); ++i) {
    const auto& c = cfg.clusters[i];
    s += common::cat(i ? "; " : "", c.name, ": ", c.endpoints.size(), " endpoint",
                     c.endpoints.size() == 1 ? "" : "s", ", ", config::to_string(c.balancer));
  }
  return s + common::cat("), ", cfg.routes.size(), " route", cfg.routes.size() == 1 ? "" : "s");
}

// What the drain sequence does to this gateway (control thread).
runtime::drain_hooks drain_hooks_of(gateway& g, frontend::listener_set& listeners) {
  runtime::drain_hooks hooks;
  hooks.on_draining = [&g](bool on) { g.registry.set_draining(on); };
  hooks.stop_accepting = [&listeners] { listeners.close(); };
  hooks.drain_workers = [&g] { g.each_worker(&proxy::worker::start_drain); };
  hooks.open_connections = [&g] {
    std::size_t open = 0;
    for (auto& w : g.workers) open += w->connections();
    return open;
  };
  hooks.abort_all = [&g] { g.each_worker(&proxy::worker::abort_all); };
  return hooks;
}
}  // namespace

int run_gateway(std::shared_ptr<const config::gateway_config> cfg, runtime::io_kind io,
                const std::string& io_reason, config_source source) {
  unsigned n = cfg->workers ? cfg->workers : runtime::default_worker_count();
  gateway g(cfg, n);
  g.registry.set_io_backend(runtime::to_string(io));
  g.registry.set_version(MERIDIAN_VERSION);
  g.names = upstream::resolve_names(*cfg);
  probe::merge_names({}, g.names);  // says which names do not resolve yet
  auto topo = upstream::build_topology(*cfg, g.names, g.ids, g.registry);
  g.registry.set_endpoints(upstream::series_of(*topo));
  g.topo = topo;
  g.registry.add_text_source([&g] { return upstream::tls_metrics_text(*g.topo); });
  g.tenants = load_tenants(*cfg, nullptr, g.keys_mtime);
  if (cfg->tenants.redis) {
    g.shared = std::make_unique<tenants::shared_limits>(*cfg->tenants.redis);
    g.shared->set_table(g.tenants);
  }
  g.registry.add_text_source([&g] {
    std::string out = g.tenants ? tenants::metrics_text(*g.tenants) : "";
    if (g.shared) out += g.shared->metrics_text();
    return out;
  });
  auto snap = std::make_shared<const proxy::snapshot>(cfg, topo, n, nullptr, g.tenants);
  g.sizes = snap->sizes;
  std::uint64_t seed = common::os_seed();
  for (unsigned i = 0; i < n; ++i) {
    g.workers.push_back(
        std::make_unique<proxy::worker>(g.pool.io(i), snap, g.registry.worker(i), seed + i));
    g.contexts.push_back(&g.pool.io(i));
  }
  g.current = cfg;
  std::vector<http::connection_host*> raw;
  std::vector<const upstream::worker_upstreams*> ups;
  for (auto& w : g.workers) {
    raw.push_back(w.get());
    ups.push_back(&w->upstreams());
  }
  auto listeners = std::make_unique<frontend::listener_set>(*cfg, raw);
  g.listeners = listeners.get();
  g.registry.add_text_source([l = listeners.get()] { return l->metrics_text(); });

  runtime::control control({cfg->drain.shutdown_delay, cfg->drain.timeout},
                           drain_hooks_of(g, *listeners));
  // Probes run on the control thread and publish what they learn to every worker.
  probe::prober prober(
      control.io(), cfg, snap->topo, g.registry,
      [&g](std::shared_ptr<const upstream::signals> s) {
        runtime::publish<upstream::signals>(g.contexts, std::move(s), [&g](std::size_t i, auto v) {
          g.workers[i]->apply_signals(std::move(v));
        });
      },
      seed ^ 0x9e3779b97f4a7c15ULL);
  g.prober = &prober;
  probe::dns_refresh dns(
      control.io(), cfg,
      [&g](std::shared_ptr<const config::gateway_config> used, upstream::name_table names) {
        dns_changed(g, used, std::move(names));
      });
  g.dns = &dns;

  admin::context actx;
  actx.cfg = cfg.get();
  actx.metrics = &g.registry;
  actx.workers = ups;
  actx.draining = &control.draining_flag();
  actx.io_backend = std::string(runtime::to_string(io));
  actx.on_drain = [&control] { control.fail_readiness(); };
  actx.on_undrain = [&control] { return control.restore_readiness(); };
  actx.on_quit = [&control] { control.begin_drain(); };
  actx.signals = [&prober] { return prober.current(); };
  actx.probe_errors = [&prober](std::size_t c, std::size_t e) {
    const auto& pe = prober.errors(c, e);
    return std::array<std::string, 3>{pe.probe, pe.scrape, pe.models};
  };
  actx.on_reload = [&g, &source] { return reload(g, source); };
  actx.tenants = [&g]() -> std::string {
    if (!g.tenants) return {};
    return tenants::admin_json(*g.tenants, common::steady().now());
  };
  control.on_reload([&g, &source] { reload(g, source); });
  admin::server admin_server(control.io(), cfg->admin.address, actx);
  g.admin = &admin_server;
  // Certificate files are watched on the control thread: a renewed certificate is served within
  // seconds without a reload; one that does not load keeps the old and counts a failed reload.
  runtime::timer cert_watch(control.io(), common::steady());
  bool stopping = false;
  asio::co_spawn(
      control.io(),
      [](runtime::timer& t, bool& stop, gateway& gw) -> asio::awaitable<void> {
        while (!stop) {
          co_await t.sleep_for(std::chrono::seconds(2));
          if (stop || !gw.listeners) break;
          for (const auto& why : gw.listeners->check_files()) gw.registry.count_reload(why.empty());
          check_keys_file(gw);
        }
      }(cert_watch, stopping, g),
      asio::detached);
  control.on_stop([&] {
    stopping = true;
    cert_watch.cancel();
    prober.stop();
    dns.stop();
    admin_server.close();
    g.pool.stop();
  });

  log(log_level::info, "runtime", "meridian ", MERIDIAN_VERSION, " starting: io backend ",
      runtime::to_string(io), " (", io_reason, "), ", n, " worker", n == 1 ? "" : "s");
  log(log_level::info, "config", config_summary(*cfg));
  for (const auto& b : listeners->bound()) log(log_level::info, "frontend", "listener ", b);
  log(log_level::info, "admin", "admin listener ", admin_server.bound());

  // Workers already hold the first snapshot; later ones (reload, DNS) travel the same way.
  runtime::publish<proxy::snapshot>(
      g.contexts, snap, [&g](std::size_t i, auto s) { g.workers[i]->apply(std::move(s)); });
  g.pool.start();
  prober.start();
  dns.start();
  listeners->start();
  admin_server.start();
  control.run();
  g.pool.join();
  g.listeners = nullptr;
  tear_down(g, control, listeners);
  log(log_level::info, "runtime", "stopped");
  return 0;
}

}  // namespace meridian::app
