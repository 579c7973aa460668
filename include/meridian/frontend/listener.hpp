// Client listeners: one SO_REUSEPORT acceptor per listener per worker, so the kernel spreads
// connections over workers and no connection ever changes thread. Each acceptor runs the shared
// accept loop (http/accept.hpp) for the connection_host of its worker (a proxy worker, through
// that interface only). Built on the main thread; each acceptor is then used only by its
// worker's thread.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "meridian/config/config.hpp"
#include "meridian/http/connection.hpp"

namespace meridian::frontend {

class listener_set {
 public:
  // Binds every listener on every host (port 0 is resolved once and shared); throws
  // std::runtime_error naming the address that cannot be bound.
  listener_set(const config::gateway_config& cfg, std::vector<http::connection_host*> hosts);
  ~listener_set();

  void start();
  // Stops accepting (drain). Safe from any thread: the close runs on each host's thread.
  void close();
  // "name=host:port" of each bound listener, in config order.
  const std::vector<std::string>& bound() const { return bound_; }

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
  std::vector<std::string> bound_;
};

}  // namespace meridian::frontend
