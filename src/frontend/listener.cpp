#include "meridian/frontend/listener.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <cerrno>
#include <stdexcept>

#include "meridian/common/error.hpp"
#include "meridian/common/log.hpp"
#include "meridian/http/accept.hpp"

namespace meridian::frontend {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {
struct acceptor_slot {
  tcp::acceptor acceptor;
  http::connection_host* host;
  std::string name;
};
}  // namespace

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

listener_set::listener_set(const config::gateway_config& cfg,
                           std::vector<http::connection_host*> hosts)
    : impl_(std::make_unique<impl>()) {
  for (const auto& l : cfg.listeners) {
    tcp::endpoint ep = http::listen_endpoint(l.address.host, l.address.port, "listener address");
    refuse_taken(ep, l);
    for (auto* h : hosts) {
      auto slot = std::make_unique<acceptor_slot>(acceptor_slot{tcp::acceptor(h->io()), h, l.name});
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
    asio::co_spawn(s->acceptor.get_executor(), http::accept_loop(s->acceptor, *s->host, s->name),
                   asio::detached);
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
