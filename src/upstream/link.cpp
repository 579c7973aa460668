#include "meridian/upstream/link.hpp"

#include <sys/socket.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cerrno>
#include <optional>

#include "meridian/runtime/write.hpp"
#include "meridian/tls/client.hpp"
#include "meridian/tls/stream.hpp"

namespace meridian::upstream {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

struct link::impl {
  explicit impl(const asio::any_io_executor& ex) : socket(ex) {}
  tcp::socket socket;               // until the handshake moves it into `tls`
  std::optional<tls::stream> tls;   // after it
  std::shared_ptr<tls::peer> peer;  // the endpoint's TLS state
  bool shut = false;                // shut down here (a deadline, a hedge that lost)
  tcp::socket& lowest() { return tls ? tls->socket() : socket; }
};

link::link() = default;
link::~link() = default;
link::link(link&&) noexcept = default;
link& link::operator=(link&&) noexcept = default;

link link::make(const asio::any_io_executor& ex) {
  link l;
  l.impl_ = std::make_unique<impl>(ex);
  return l;
}

asio::awaitable<std::tuple<boost::system::error_code>> link::connect(const resolved_address& to) {
  return impl_->socket.async_connect(tcp::endpoint(to.address(), to.port()),
                                     asio::as_tuple(asio::use_awaitable));
}

asio::awaitable<handshake_result> link::handshake(const tls_target& t) {
  auto& s = impl_->tls.emplace(std::move(impl_->socket), t.context, t.name, t.peer);
  impl_->peer = t.peer;
  handshake_result r;
  tls::failure why{};
  r.ok = co_await s.handshake(why);
  if (r.ok) {
    r.resumed = s.resumed();
    if (t.peer) t.peer->handshake_done(r.resumed);
  } else {
    r.reason = tls::to_string(why);
    r.detail = s.failure_detail();
    // Ended here (a deadline: counted as a connect timeout; a try abandoned): not the server's.
    if (t.peer && !impl_->shut) t.peer->handshake_failed(why, r.detail);
  }
  co_return r;
}

bool link::secure() const {
  return impl_ && impl_->tls;
}

std::string_view link::alpn() const {
  return impl_ && impl_->tls ? impl_->tls->alpn() : std::string_view();
}

std::string link::take_tls_refusal() {
  if (!impl_ || !impl_->tls || impl_->tls->failure_detail().empty()) return {};
  std::string why = impl_->tls->failure_detail();
  if (impl_->peer) impl_->peer->handshake_failed(tls::failure::alert, why);
  impl_->peer.reset();  // once
  return why;
}

asio::awaitable<std::tuple<boost::system::error_code, std::size_t>> link::read_some(
    asio::mutable_buffer into) {
  if (impl_->tls) return impl_->tls->read_some(into);
  return impl_->socket.async_read_some(into, asio::as_tuple(asio::use_awaitable));
}

asio::awaitable<std::tuple<boost::system::error_code, std::size_t>> link::write(
    std::span<const asio::const_buffer> buffers) {
  if (impl_->tls) return impl_->tls->write_all(buffers);
  return runtime::write_all(impl_->socket, buffers);
}

void link::set_no_delay() {
  boost::system::error_code ignored;
  impl_->lowest().set_option(tcp::no_delay(true), ignored);
}

void link::shutdown() {
  boost::system::error_code ignored;
  if (!impl_) return;
  impl_->shut = true;
  impl_->lowest().shutdown(tcp::socket::shutdown_both, ignored);
}

void link::close() {
  boost::system::error_code ignored;
  if (!impl_) return;
  if (impl_->tls) impl_->tls->notify_close();  // nothing is pending: a clean end for the server
  impl_->lowest().close(ignored);
}

bool link::still_usable() const {
  // TLS: what the socket holds goes through OpenSSL (a late session ticket is fine, a
  // close_notify or stray data is not).
  if (impl_->tls) return impl_->tls->peek_state() == -1;
  char c;
  ssize_t n = ::recv(impl_->socket.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

}  // namespace meridian::upstream
