// The mocks' TLS: a front that terminates TLS (OpenSSL through Asio) on the mock's public
// address and passes the plaintext to the mock itself, listening on a loopback port of its own.
// Each TLS connection gets its own plain connection, so keep-alive, streaming, resets and close
// behave as the mock makes them; the extra hop is a loopback copy inside the mock's process.
#include <boost/asio/ssl.hpp>

#include <stdexcept>

#include "common/net.hpp"
#include "mock/mock.hpp"

namespace meridian::loadtest {

namespace ssl = asio::ssl;

struct tls_front::impl {
  explicit impl(tls_front_options o)
      : opt(std::move(o)), pool(std::max(1, opt.threads)), ctx(ssl::context::tls_server) {}
  tls_front_options opt;
  io_pool pool;
  ssl::context ctx;
  tcp::endpoint to;
  std::vector<std::shared_ptr<tcp::acceptor>> acceptors;
  std::atomic<bool> stopping{false};
};

namespace {
// Copies one direction until it ends; then both connections end (the mock's close or reset
// reaches the TLS client as a close, the client's close reaches the mock).
template <typename From, typename To>
asio::awaitable<void> pump(From& from, To& to, std::function<void()> close_all) {
  std::vector<char> buf(16 * 1024);
  while (true) {
    auto [ec, n] = co_await from.async_read_some(asio::buffer(buf), use_nothrow);
    if (ec || n == 0) break;
    auto [wec, wn] = co_await asio::async_write(to, asio::buffer(buf.data(), n), use_nothrow);
    if (wec) break;
  }
  close_all();
}

asio::awaitable<void> serve(tls_front::impl* s, tcp::socket raw) {
  auto tls = std::make_shared<ssl::stream<tcp::socket>>(std::move(raw), s->ctx);
  auto plain = std::make_shared<tcp::socket>(tls->get_executor());
  asio::steady_timer deadline(tls->get_executor());
  deadline.expires_after(std::chrono::seconds(10));
  deadline.async_wait([tls](error_code ec) {
    if (ec) return;
    error_code ignored;
    tls->next_layer().close(ignored);
  });
  auto [hec] = co_await tls->async_handshake(ssl::stream_base::server, use_nothrow);
  deadline.cancel();
  if (hec) co_return;
  auto [cec] = co_await plain->async_connect(s->to, use_nothrow);
  if (cec) co_return;
  error_code ignored;
  plain->set_option(tcp::no_delay(true), ignored);
  tls->next_layer().set_option(tcp::no_delay(true), ignored);
  auto close_all = [tls, plain] {
    error_code e;
    tls->next_layer().shutdown(tcp::socket::shutdown_both, e);
    plain->shutdown(tcp::socket::shutdown_both, e);
  };
  auto ex = tls->get_executor();
  asio::co_spawn(ex, pump(*tls, *plain, close_all), [tls, plain](std::exception_ptr) {});
  co_await pump(*plain, *tls, close_all);
}

asio::awaitable<void> accept_loop(tls_front::impl* s, std::shared_ptr<tcp::acceptor> acc) {
  while (!s->stopping) {
    auto [ec, sock] = co_await acc->async_accept(use_nothrow);
    if (ec) {
      if (s->stopping || ec == asio::error::operation_aborted) co_return;
      continue;
    }
    asio::co_spawn(acc->get_executor(), serve(s, std::move(sock)), asio::detached);
  }
}
}  // namespace

tls_front::tls_front(tls_front_options o) : impl_(std::make_unique<impl>(std::move(o))) {
  auto& c = impl_->ctx;
  c.set_options(ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::no_compression);
  SSL_CTX_set_options(c.native_handle(), SSL_OP_IGNORE_UNEXPECTED_EOF);
  c.use_certificate_chain_file(impl_->opt.cert);  // throw with OpenSSL's reason
  c.use_private_key_file(impl_->opt.key, ssl::context::pem);
}

tls_front::~tls_front() { stop(); }

std::uint16_t tls_front::start(std::uint16_t to_port) {
  auto& s = *impl_;
  s.to = tcp::endpoint(asio::ip::make_address("127.0.0.1"), to_port);
  s.acceptors = open_acceptors(s.pool, parse_endpoint(s.opt.listen));
  for (auto& a : s.acceptors)
    asio::co_spawn(a->get_executor(), accept_loop(&s, a), asio::detached);
  s.pool.start();
  return s.acceptors.front()->local_endpoint().port();
}

void tls_front::stop() {
  if (!impl_ || impl_->stopping.exchange(true)) return;
  impl_->pool.stop();
  impl_->pool.join();
}

}  // namespace meridian::loadtest
