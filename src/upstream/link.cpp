#include "meridian/upstream/link.hpp"

#include <sys/socket.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cerrno>

#include "meridian/runtime/write.hpp"
#include "meridian/upstream/cluster.hpp"

namespace meridian::upstream {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

struct link::impl {
  explicit impl(asio::io_context& io) : socket(io) {}
  tcp::socket socket;
};

link::link() = default;
link::~link() = default;
link::link(link&&) noexcept = default;
link& link::operator=(link&&) noexcept = default;

link link::make(asio::io_context& io) {
  link l;
  l.impl_ = std::make_unique<impl>(io);
  return l;
}

asio::awaitable<std::tuple<boost::system::error_code>> link::connect(const endpoint_info& ep) {
  return impl_->socket.async_connect(tcp::endpoint(ep.resolved.address(), ep.resolved.port()),
                                     asio::as_tuple(asio::use_awaitable));
}

asio::awaitable<std::tuple<boost::system::error_code, std::size_t>> link::read_some(
    asio::mutable_buffer into) {
  return impl_->socket.async_read_some(into, asio::as_tuple(asio::use_awaitable));
}

asio::awaitable<std::tuple<boost::system::error_code, std::size_t>> link::write(
    std::span<const asio::const_buffer> buffers) {
  return runtime::write_all(impl_->socket, buffers);
}

void link::set_no_delay() {
  boost::system::error_code ignored;
  impl_->socket.set_option(tcp::no_delay(true), ignored);
}

void link::shutdown() {
  boost::system::error_code ignored;
  if (impl_) impl_->socket.shutdown(tcp::socket::shutdown_both, ignored);
}

void link::close() {
  boost::system::error_code ignored;
  if (impl_) impl_->socket.close(ignored);
}

bool link::still_usable() const {
  char c;
  ssize_t n = ::recv(impl_->socket.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

}  // namespace meridian::upstream
