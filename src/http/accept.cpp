#include "meridian/http/accept.hpp"

#include <sys/socket.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <stdexcept>

#include "meridian/common/error.hpp"
#include "meridian/common/log.hpp"
#include "meridian/http/headers.hpp"
#include "meridian/metrics/metrics.hpp"
#include "meridian/runtime/timer.hpp"

namespace meridian::http {

using tcp = asio::ip::tcp;

void admit(connection_host& host, tcp::socket socket) {
  auto& env = host.env();
  if (env.metrics) env.metrics->accepted_connections().inc();
  if (env.open.load(std::memory_order_relaxed) >= host.max_connections() || env.draining) {
    // Refuse politely without reading: a short non-blocking send, then close.
    auto kind = env.draining ? common::error_kind::draining : common::error_kind::overloaded;
    std::string out;
    build_local_response(
        out, common::status_of(kind), "application/json",
        common::error_body(kind, env.draining ? "the gateway is draining" : "too many connections"),
        false, {}, common::retry_after_of(kind));
    ::send(socket.native_handle(), out.data(), out.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (env.metrics) env.metrics->rejected(metrics::reject_reason::overloaded).inc();
    boost::system::error_code ignored;
    socket.close(ignored);
    return;
  }
  host.track(connection::start(host.io(), std::move(socket), env, host.served_by()));
}

asio::awaitable<void> accept_loop(tcp::acceptor& acceptor, connection_host& host,
                                  std::string name) {
  runtime::timer backoff(host.io(), *host.env().clock);
  common::log_limiter warnings;
  while (acceptor.is_open()) {
    auto [ec, socket] = co_await acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
      std::uint64_t left = 0;
      if (warnings.allow(host.env().clock->now(), left))
        common::log(common::log_level::warn, "http", "accept on ", name, " failed: ", ec.message(),
                    common::left_out(left));
      co_await backoff.sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    admit(host, std::move(socket));
  }
}

tcp::endpoint listen_endpoint(std::string_view host, std::uint16_t port, std::string_view what) {
  boost::system::error_code ec;
  auto addr =
      asio::ip::make_address(host == "localhost" ? std::string_view("127.0.0.1") : host, ec);
  if (ec) {
    bool v6 = host.find(':') != std::string_view::npos;
    throw std::runtime_error(common::cat(what, ' ', v6 ? "[" : "", host, v6 ? "]" : "", ':', port,
                                         " is not an IP address"));
  }
  return {addr, port};
}

}  // namespace meridian::http
