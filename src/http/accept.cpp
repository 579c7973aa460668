#include "meridian/http/accept.hpp"

#include <sys/socket.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <stdexcept>

#include "http/h2.hpp"
#include "meridian/common/error.hpp"
#include "meridian/common/log.hpp"
#include "meridian/http/headers.hpp"
#include "meridian/metrics/metrics.hpp"
#include "meridian/runtime/timer.hpp"
#include "meridian/runtime/watchdog.hpp"

namespace meridian::http {

using tcp = asio::ip::tcp;

namespace {
// A connection not yet handed to its codec (a TLS handshake, h2c sniffing) counts as open.
struct pending {
  explicit pending(connection_env& e) : env(e) { env.open.fetch_add(1, std::memory_order_relaxed); }
  pending(const pending&) = delete;
  pending& operator=(const pending&) = delete;
  connection_env& env;
  bool held = true;
  void release() {
    if (held) env.open.fetch_sub(1, std::memory_order_relaxed);
    held = false;
  }
  ~pending() { release(); }
};

// The handshake of a connection to a TLS listener, then its HTTP/1.1 codec over TLS.
asio::awaitable<void> handshake(connection_host& host, tcp::socket socket, tls::context_slot& slot) {
  auto& env = host.env();
  auto ctx = slot.current();  // kept for the handshake: its SNI callback needs it
  // A pending handshake counts as an open connection (the cap bounds their memory too).
  pending counted{env};
  tls::stream s(std::move(socket), ctx->native());
  runtime::watchdog deadline(
      host.io(), *env.clock,
      [](void* sock) {
        boost::system::error_code ignored;
        static_cast<tcp::socket*>(sock)->shutdown(tcp::socket::shutdown_both, ignored);
      },
      &s.socket());
  deadline.set(env.clock->now() + ctx->handshake_timeout());
  tls::failure why{};
  bool ok = co_await s.handshake(why);
  if (deadline.expired()) {
    ok = false;
    why = tls::failure::timeout;
  }
  deadline.clear();
  auto& st = slot.stats();
  if (!ok) {
    st.failures[static_cast<int>(why)].fetch_add(1, std::memory_order_relaxed);
    if (why == tls::failure::plain_http) {
      std::string out;
      build_local_response(out, 400, "application/json",
                           common::error_body(common::error_kind::bad_request,
                                              "this port speaks TLS: use https://"),
                           false);
      ::send(s.socket().native_handle(), out.data(), out.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    }
    // Each failure by reason in the log (at most 5 in 10 s per worker; the metric counts all).
    static thread_local common::log_limiter failures_logged;
    std::uint64_t left = 0;
    if (failures_logged.allow(env.clock->now(), left)) {
      boost::system::error_code ec;
      auto peer = s.socket().remote_endpoint(ec);
      common::log(common::log_level::info, "tls", "handshake on ", slot.listener(), " from ",
                  ec ? std::string("unknown") : peer.address().to_string(), " failed: ",
                  tls::to_string(why), common::left_out(left));
    }
    boost::system::error_code ignored;
    s.socket().shutdown(tcp::socket::shutdown_both, ignored);
    s.socket().close(ignored);
    co_return;
  }
  bool v13 = s.version() == "TLSv1.3";
  st.handshakes[v13 ? 1 : 0][s.resumed() ? 1 : 0].fetch_add(1, std::memory_order_relaxed);
  if (s.ktls_send()) st.ktls_connections.fetch_add(1, std::memory_order_relaxed);
  counted.release();
  if (s.alpn() == "h2")
    h2::start(host.io(), std::move(s), env, host.served_by(), &host);
  else
    basic_connection<tls::stream>::start(host.io(), std::move(s), env, host.served_by(), &host);
}

// A plain listener that speaks h2c with prior knowledge as well: the first bytes tell the
// HTTP/2 preface from an HTTP/1.1 request line (no method is "PRI"), within the header timeout.
asio::awaitable<void> sniff(connection_host& host, tcp::socket socket) {
  auto& env = host.env();
  pending counted{env};
  runtime::watchdog deadline(
      host.io(), *env.clock,
      [](void* sock) {
        boost::system::error_code ignored;
        static_cast<tcp::socket*>(sock)->shutdown(tcp::socket::shutdown_both, ignored);
      },
      &socket);
  deadline.set(env.clock->now() + env.settings.idle_timeout);
  char head[h2::preface.size()];
  bool is_h2 = false;
  while (true) {
    auto [ec] = co_await socket.async_wait(tcp::socket::wait_read, asio::as_tuple(asio::use_awaitable));
    if (ec || deadline.expired()) co_return;
    ssize_t n = ::recv(socket.native_handle(), head, sizeof head, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) co_return;
    if (n < 0) continue;
    auto got = std::string_view(head, static_cast<std::size_t>(n));
    if (got != h2::preface.substr(0, got.size())) break;  // HTTP/1.x (or garbage: its codec says)
    if (got.size() == h2::preface.size()) {
      is_h2 = true;
      break;
    }
  }
  deadline.clear();
  counted.release();
  if (is_h2)
    h2::start(host.io(), std::move(socket), env, host.served_by(), &host);
  else
    connection::start(host.io(), std::move(socket), env, host.served_by(), &host);
}
}  // namespace

void admit(connection_host& host, tcp::socket socket, tls::context_slot* tls, bool h2c) {
  auto& env = host.env();
  if (env.metrics) env.metrics->accepted_connections().inc();
  if (env.open.load(std::memory_order_relaxed) >= host.max_connections() || env.draining) {
    if (!tls) {
      // Refuse politely without reading: a short non-blocking send, then close.
      auto kind = env.draining ? common::error_kind::draining : common::error_kind::overloaded;
      std::string out;
      build_local_response(
          out, common::status_of(kind), "application/json",
          common::error_body(kind, env.draining ? "the gateway is draining" : "too many connections"),
          false, {}, common::retry_after_of(kind));
      ::send(socket.native_handle(), out.data(), out.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    }
    if (env.metrics) env.metrics->rejected(metrics::reject_reason::overloaded).inc();
    boost::system::error_code ignored;
    socket.close(ignored);
    return;
  }
  if (tls) {
    asio::co_spawn(host.io(), handshake(host, std::move(socket), *tls), asio::detached);
    return;
  }
  if (h2c) {
    asio::co_spawn(host.io(), sniff(host, std::move(socket)), asio::detached);
    return;
  }
  connection::start(host.io(), std::move(socket), env, host.served_by(), &host);
}

asio::awaitable<void> accept_loop(tcp::acceptor& acceptor, connection_host& host,
                                  std::string name, tls::context_slot* tls, bool h2c) {
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
    admit(host, std::move(socket), tls, h2c);
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
