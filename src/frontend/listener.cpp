#include "meridian/frontend/listener.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cerrno>
#include <stdexcept>

#include "meridian/common/error.hpp"
#include "meridian/common/log.hpp"
#include "meridian/http/headers.hpp"
#include "meridian/metrics/metrics.hpp"

namespace meridian::frontend {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {
struct acceptor_slot {
  tcp::acceptor acceptor;
  proxy::worker* worker;
  std::string name;
};

asio::awaitable<void> accept_loop(acceptor_slot* slot) {
  asio::steady_timer backoff(slot->acceptor.get_executor());
  common::log_limiter warnings;
  while (slot->acceptor.is_open()) {
    auto [ec, socket] = co_await slot->acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
    if (ec) {
      if (ec == asio::error::operation_aborted || !slot->acceptor.is_open()) co_return;
      // EMFILE and friends: back off briefly instead of spinning on a full descriptor table.
      std::uint64_t left = 0;
      if (warnings.allow(std::chrono::steady_clock::now(), left))
        common::log(common::log_level::warn, "frontend", "accept on ", slot->name,
                    " failed: ", ec.message(), common::left_out(left));
      backoff.expires_after(std::chrono::milliseconds(50));
      co_await backoff.async_wait(asio::as_tuple(asio::use_awaitable));
      continue;
    }
    admit(*slot->worker, std::move(socket));
  }
}

tcp::endpoint resolve(const config::host_port& hp) {
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(hp.host == "localhost" ? "127.0.0.1" : hp.host, ec);
  if (ec)
    throw std::runtime_error(
        common::cat("listener address ", hp.to_string(), " is not an IP address"));
  return {addr, hp.port};
}
}  // namespace

void admit(proxy::worker& w, tcp::socket socket) {
  auto& env = w.env();
  if (env.metrics) env.metrics->accepted_connections().inc();
  if (env.open.load(std::memory_order_relaxed) >= w.max_connections() || env.draining) {
    // Refuse politely without reading: a short non-blocking send, then close.
    auto kind = env.draining ? common::error_kind::draining : common::error_kind::overloaded;
    std::string out;
    http::build_local_response(
        out, common::status_of(kind), "application/json",
        common::error_body(kind, env.draining ? "the gateway is draining" : "too many connections"),
        false, {}, common::retry_after_of(kind));
    ::send(socket.native_handle(), out.data(), out.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (env.metrics) env.metrics->rejected(metrics::reject_reason::overloaded).inc();
    boost::system::error_code ignored;
    socket.close(ignored);
    return;
  }
  w.track(http::connection::start(w.io(), std::move(socket), env, w.handler()));
}

// SO_REUSEPORT would let this gateway share a port another process listens on, and split its
// traffic silently: a port taken without it is an error at start.
void refuse_taken(const tcp::endpoint& ep, const config::listener_config& l) {
  if (ep.port() == 0) return;
  int fd = ::socket(ep.protocol().family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  bool taken = ::bind(fd, ep.data(), static_cast<socklen_t>(ep.size())) != 0 && errno == EADDRINUSE;
  ::close(fd);
  if (taken)
    throw std::runtime_error(common::cat("cannot listen on ", l.address.to_string(), " (", l.name,
                                         "): the address is already in use by another process"));
}

struct listener_set::impl {
  std::vector<std::unique_ptr<acceptor_slot>> slots;
};

listener_set::listener_set(const config::gateway_config& cfg, std::vector<proxy::worker*> workers)
    : impl_(std::make_unique<impl>()) {
  for (const auto& l : cfg.listeners) {
    tcp::endpoint ep = resolve(l.address);
    refuse_taken(ep, l);
    for (auto* w : workers) {
      auto slot = std::make_unique<acceptor_slot>(acceptor_slot{tcp::acceptor(w->io()), w, l.name});
      boost::system::error_code ec;
      auto& a = slot->acceptor;
      a.open(ep.protocol(), ec);
      if (!ec) a.set_option(tcp::acceptor::reuse_address(true), ec);
      if (!ec) {
        int one = 1;
        if (::setsockopt(a.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
          ec.assign(errno, boost::system::system_category());
      }
      if (!ec) a.bind(ep, ec);
      if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
      if (ec)
        throw std::runtime_error(common::cat("cannot listen on ", l.address.to_string(), " (",
                                             l.name, "): ", ec.message()));
      // Port 0: the first worker's bind picks the port; the others join it.
      ep = a.local_endpoint();
      impl_->slots.push_back(std::move(slot));
    }
    bound_.push_back(common::cat(l.name, '=', ep.address().to_string(), ':', ep.port()));
  }
}

listener_set::~listener_set() = default;

void listener_set::start() {
  for (auto& s : impl_->slots)
    asio::co_spawn(s->acceptor.get_executor(), accept_loop(s.get()), asio::detached);
}

void listener_set::close() {
  for (auto& s : impl_->slots) {
    asio::post(s->acceptor.get_executor(), [slot = s.get()] {
      boost::system::error_code ignored;
      slot->acceptor.close(ignored);
    });
  }
}

}  // namespace meridian::frontend
