// The admin listener: /metrics, /livez, /readyz, /admin/endpoints, /admin/config (behind the
// token when one is set), and the mutating /admin/drain, /admin/undrain, /admin/quit and
// /admin/reload. Runs on the
// control thread's io_context; it only reads the workers' atomics and the metrics registry.
#pragma once

#include <boost/asio/io_context.hpp>

#include <array>
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "meridian/config/config.hpp"
#include "meridian/metrics/metrics.hpp"
#include "meridian/upstream/cluster.hpp"
#include "meridian/upstream/signals.hpp"

namespace meridian::admin {

struct context {
  const config::gateway_config* cfg = nullptr;
  metrics::registry* metrics = nullptr;
  std::vector<const upstream::worker_upstreams*> workers;
  const std::atomic<bool>* draining = nullptr;
  std::string io_backend;
  std::function<void()> on_drain;  // readiness fails, nothing stops; control thread
  // Readiness passes again after a drain; false once the gateway is stopping. Control thread.
  std::function<bool()> on_undrain;
  std::function<void()> on_quit;  // the stop sequence (drain, then exit); control thread
  // POST /admin/reload: re-reads the config; empty on success, else why it was kept. Control
  // thread.
  std::function<std::string()> on_reload;
  // The probes' last published signals and their last errors (probe, scrape, models); both
  // optional, called on the control thread.
  std::function<std::shared_ptr<const upstream::signals>()> signals;
  std::function<std::array<std::string, 3>(std::size_t, std::size_t)> probe_errors;
  // GET /admin/tenants: the tenants' usage and limits as JSON (never a key); empty (a 404)
  // where the config has no tenants section. Control thread.
  std::function<std::string()> tenants;
};

struct response {
  int status = 200;
  std::string content_type;
  std::string body;
  std::string allow = {};  // a 405's Allow header
};

// The routing of admin requests, separate from sockets so it can be tested directly.
// `authorization`: the request's Authorization header (mutating requests, and reading the
// config, need it when a token is configured).
response handle(const context& ctx, std::string_view method, std::string_view path,
                std::string_view authorization = {});

class server {
 public:
  // Binds now (throws std::runtime_error if it cannot); serves after start().
  server(boost::asio::io_context& io, const config::host_port& address, context ctx);
  ~server();
  void start();
  // Stops accepting and closes open admin connections (control thread).
  void close();
  // The config the pages describe, after a reload (control thread).
  void set_config(const config::gateway_config* cfg);
  std::string bound() const;

  struct impl;

 private:
  std::unique_ptr<impl> impl_;
};

}  // namespace meridian::admin
