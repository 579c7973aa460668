// The proxy's request handler: route -> deadline -> admission -> pick -> attempts (with the
// retry policy and budget) -> relay -> count and log, over a per-request context value. Plugged
// into every client connection of a worker; used by that worker's thread only.
#pragma once

#include <boost/asio/awaitable.hpp>

#include "meridian/http/connection.hpp"
#include "proxy/worker_context.hpp"

namespace meridian::proxy {

class handler final : public http::handler {
 public:
  explicit handler(worker_context& w) : w_(w) {}
  boost::asio::awaitable<void> serve(http::connection& c) override;
  void finished(http::connection& c) override;

 private:
  worker_context& w_;
};

}  // namespace meridian::proxy
