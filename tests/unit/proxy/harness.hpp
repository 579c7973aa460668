// A proxy worker running in this process on its own thread, behind a loopback acceptor, for
// the proxy's unit tests. Shuts down in the order the gateway keeps.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <string>
#include <thread>
#include <vector>

#include "meridian/http/accept.hpp"
#include "meridian/proxy/worker.hpp"

namespace test {

namespace asio = boost::asio;
using namespace meridian;

// One cluster "c" of the given ports (round robin), one route "all", plus `extra` YAML.
inline std::shared_ptr<const config::gateway_config> proxy_config(
    const std::vector<std::uint16_t>& ports, const std::string& extra = "") {
  std::string eps;
  for (auto p : ports)
    eps += (eps.empty() ? "" : ", ") + std::string("127.0.0.1:") + std::to_string(p);
  std::string routes = extra.find("routes:") == std::string::npos
                           ? "routes: [ { name: all, match: { path_prefix: / }, cluster: c } ]\n"
                           : "";
  return config::load_string(
      "listeners: [ { address: 127.0.0.1:0 } ]\naccess_log: false\n"
      "clusters: [ { name: c, balancer: round_robin, endpoints: [ " +
          eps + " ] } ]\n" + routes + extra,
      "t");
}

// The order the gateway keeps at shutdown: close, let parked operations finish, release the
// worker's I/O objects, then the io_context, then the worker.
struct proxy_harness {
  std::shared_ptr<const config::gateway_config> cfg;
  upstream::identity_table ids;
  metrics::registry reg;
  std::unique_ptr<asio::io_context> io = std::make_unique<asio::io_context>(1);
  std::unique_ptr<proxy::worker> w;
  asio::ip::tcp::acceptor acceptor{*io, {asio::ip::make_address("127.0.0.1"), 0}};
  asio::executor_work_guard<asio::io_context::executor_type> guard{io->get_executor()};
  std::thread thread;

  explicit proxy_harness(std::shared_ptr<const config::gateway_config> c)
      : cfg(std::move(c)), reg(proxy::metrics_layout(*cfg), 1) {
    auto snap =
        std::make_shared<const proxy::snapshot>(cfg, upstream::resolve_topology(*cfg, ids, reg));
    w = std::make_unique<proxy::worker>(*io, snap, reg.worker(0), 42);
    asio::co_spawn(*io, accept(), asio::detached);
    thread = std::thread([this] { io->run(); });
  }
  ~proxy_harness() {
    asio::post(*io, [this] {
      boost::system::error_code ignored;
      acceptor.close(ignored);
      w->abort_all();
      guard.reset();
    });
    thread.join();
    w->release_io();
    io.reset();
    w.reset();
  }
  asio::awaitable<void> accept() {
    while (true) {
      auto [ec, s] = co_await acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
      if (ec) co_return;
      http::admit(*w, std::move(s));
    }
  }
  std::uint16_t port() const { return acceptor.local_endpoint().port(); }
  void publish(std::shared_ptr<const proxy::snapshot> s) {
    asio::post(*io, [this, s] { w->apply(s); });
  }
  bool has(const std::string& needle) { return reg.serialize().find(needle) != std::string::npos; }
};

}  // namespace test
