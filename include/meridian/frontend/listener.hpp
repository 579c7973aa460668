// Client listeners: one SO_REUSEPORT acceptor per listener per worker, so the kernel spreads
// connections over workers and no connection ever changes thread. Each acceptor runs the shared
// accept loop (http/accept.hpp) for the connection_host of its worker (a proxy worker, through
// that interface only). A TLS listener has one context slot its workers share: a reload or a
// changed certificate file puts a new context in it (new handshakes use it, open connections
// keep theirs), and a certificate that does not load keeps the old one. Built on the main
// thread; each acceptor is then used only by its worker's thread; reload_tls, check_files and
// metrics_text run on the control thread.
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

  // Builds the TLS contexts `cfg` asks for and, when every one loads, puts them in force;
  // else changes nothing and says why (empty: done).
  std::string reload_tls(const config::gateway_config& cfg);
  // Rebuilds the context of each TLS listener whose certificate, key or CA files changed since
  // they were last loaded (a renewed certificate, a Kubernetes Secret's symlink swapped). One
  // entry per attempt: empty when it loaded, else why it did not (the old context stays).
  std::vector<std::string> check_files();
  // meridian_tls_* families in Prometheus text format.
  std::string metrics_text() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
  std::vector<std::string> bound_;
};

}  // namespace meridian::frontend
