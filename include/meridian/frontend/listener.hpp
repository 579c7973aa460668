// Client listeners: one SO_REUSEPORT acceptor per listener per worker, so the kernel spreads
// connections over workers and no connection ever changes thread. Built on the main thread;
// each acceptor is then used only by its worker's thread.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "meridian/config/config.hpp"
#include "meridian/proxy/worker.hpp"

namespace meridian::frontend {

// Admits an accepted client connection on worker `w` (its thread): over the worker's connection
// cap or while draining it gets a short 503 and is closed, else it starts as an
// http::connection served by the worker's handler.
void admit(proxy::worker& w, boost::asio::ip::tcp::socket socket);

class listener_set {
 public:
  // Binds every listener on every worker (port 0 is resolved once and shared); throws
  // std::runtime_error naming the address that cannot be bound.
  listener_set(const config::gateway_config& cfg, std::vector<proxy::worker*> workers);
  ~listener_set();

  void start();
  // Stops accepting (drain). Safe from any thread: the close runs on each worker.
  void close();
  // "name=host:port" of each bound listener, in config order.
  const std::vector<std::string>& bound() const { return bound_; }

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
  std::vector<std::string> bound_;
};

}  // namespace meridian::frontend
