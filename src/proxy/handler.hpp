// The proxy's request handler: route -> deadline -> admission -> pick -> attempts (with the
// retry policy and budget) -> relay -> count and log, over one request value per exchange. It
// knows nothing of how a request arrived (http::exchange). Plugged into every client codec of a
// worker; used by that worker's thread only.
#pragma once

#include <boost/asio/awaitable.hpp>

#include "meridian/http/exchange.hpp"
#include "proxy/request.hpp"
#include "proxy/worker_context.hpp"

namespace meridian::proxy {

class handler final : public http::handler {
 public:
  explicit handler(worker_context& w) : w_(w) {}
  boost::asio::awaitable<void> serve(http::exchange& ex) override;
  void rejected(http::exchange& ex) override;
  // Spare request scratch (housekeeping trims it; release_io() clears it).
  scratch_pool& scratch() { return scratch_; }

 private:
  boost::asio::awaitable<void> serve_request(std::unique_ptr<request_scratch> s);
  // Counts a finished request and writes its access log line (`served`: what the handler
  // decided of it; null for one the codec refused).
  void record(const http::exchange& ex, const request_context* served);
  // At the end of serve_request, however it ends: the count, the log line, the scratch back.
  struct done_guard {
    handler& h;
    std::unique_ptr<request_scratch>& s;
    ~done_guard();
  };

  worker_context& w_;
  scratch_pool scratch_;
};

}  // namespace meridian::proxy
