#include "meridian/probe/fetch.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <array>
#include <memory>

#include "meridian/common/log.hpp"
#include "meridian/http/chunked.hpp"
#include "meridian/http/parser.hpp"

namespace meridian::probe {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {
constexpr std::size_t max_head_bytes = 64 * 1024;
constexpr std::size_t max_headers = 100;
constexpr std::size_t read_chunk = 16 * 1024;

// Shared with the deadline's handler, which may still be queued when the exchange is gone.
struct guarded_socket {
  explicit guarded_socket(const asio::any_io_executor& ex)
      : conn(upstream::link::make(ex)), timer(ex) {}
  upstream::link conn;
  asio::steady_timer timer;
  bool expired = false;
};

// One deadline for the whole exchange: shutting the socket down ends whichever operation is
// pending (by itself: closing under it would cancel it, unsafe on Asio 1.81's io_uring backend).
void arm(const std::shared_ptr<guarded_socket>& g, std::chrono::nanoseconds timeout) {
  g->timer.expires_after(timeout);
  g->timer.async_wait([g](boost::system::error_code ec) {
    if (ec) return;
    g->expired = true;
    g->conn.shutdown();
  });
}

// Config values end up in the request line and Host: refuse anything that would change framing.
bool clean(std::string_view s) {
  return std::none_of(s.begin(), s.end(), [](unsigned char c) { return c <= 0x20 || c == 0x7f; });
}

class exchange {
 public:
  exchange(fetch_request req, const common::clock& clock, const asio::any_io_executor& ex)
      : req_(std::move(req)), clock_(clock), g_(std::make_shared<guarded_socket>(ex)) {}
  ~exchange() { stop(); }
  exchange(const exchange&) = delete;
  exchange& operator=(const exchange&) = delete;

  asio::awaitable<void> run();
  fetch_result take() { return std::move(r_); }

 private:
  asio::awaitable<bool> connect();
  asio::awaitable<bool> send();
  asio::awaitable<bool> read_head();
  asio::awaitable<bool> read_body();
  asio::awaitable<boost::system::error_code> read_more();
  int take_body(http::chunked_decoder& dec);
  bool append(std::string_view data);
  bool fail(std::string why);
  bool read_failed(boost::system::error_code ec, std::string_view phase);
  double since(common::time_point t) const { return common::seconds_between(t, clock_.now()); }
  void stop();

  fetch_request req_;
  const common::clock& clock_;
  std::shared_ptr<guarded_socket> g_;
  fetch_result r_;
  common::time_point start_{};
  common::time_point sent_at_{};
  std::string request_;
  std::string buf_;  // bytes read and not yet consumed
  std::array<http::header, max_headers> headers_{};
  http::body_kind body_kind_ = http::body_kind::none;
  std::uint64_t content_length_ = 0;
};

void exchange::stop() {
  g_->timer.cancel();
  g_->conn.close();
}

bool exchange::fail(std::string why) {
  if (r_.error.empty()) r_.error = std::move(why);
  return false;
}

bool exchange::read_failed(boost::system::error_code ec, std::string_view phase) {
  if (g_->expired) return fail(common::cat("timed out ", phase));
  if (buf_.empty()) {
    if (auto refused = g_->conn.take_tls_refusal(); !refused.empty())
      return fail(common::cat("TLS connection refused (", refused, ")"));
  }
  return fail(common::cat("read failed ", phase, ": ", ec.message()));
}

asio::awaitable<void> exchange::run() {
  start_ = clock_.now();
  if (req_.path.empty() || req_.path.front() != '/' || !clean(req_.path) || req_.host.empty() ||
      !clean(req_.host)) {
    fail("invalid request path or host");
  } else {
    arm(g_, req_.timeout);
    bool ok = co_await connect();
    if (ok) ok = co_await send();
    if (ok) ok = co_await read_head();
    if (ok) ok = co_await read_body();
    r_.ok = ok;
  }
  r_.total_seconds = since(start_);
  stop();
}

asio::awaitable<bool> exchange::connect() {
  auto [ec] = co_await g_->conn.connect({req_.endpoint.address(), req_.endpoint.port()});
  if (g_->expired) co_return fail("timed out while connecting");
  if (ec == asio::error::connection_refused) co_return fail("connect refused");
  if (ec) co_return fail(common::cat("connect failed: ", ec.message()));
  auto connected = clock_.now();
  r_.connect_seconds = common::seconds_between(start_, connected);
  g_->conn.set_no_delay();
  if (req_.tls) {
    auto hs = co_await g_->conn.handshake(req_.tls);
    if (g_->expired) co_return fail("timed out in the TLS handshake");
    if (!hs.ok) co_return fail(common::cat("TLS handshake failed (", hs.reason, ": ", hs.detail, ")"));
    r_.handshake_seconds = since(connected);
  }
  co_return true;
}

asio::awaitable<bool> exchange::send() {
  request_ = common::cat("GET ", req_.path, " HTTP/1.1\r\nHost: ", req_.host,
                         "\r\nUser-Agent: meridian-probe\r\nAccept: */*\r\n"
                         "Connection: close\r\n\r\n");
  const asio::const_buffer out[] = {asio::buffer(request_)};
  auto [ec, n] = co_await g_->conn.write(out);
  if (g_->expired) co_return fail("timed out sending the request");
  if (ec) co_return fail(common::cat("write failed: ", ec.message()));
  sent_at_ = clock_.now();
  co_return true;
}

asio::awaitable<boost::system::error_code> exchange::read_more() {
  std::size_t old = buf_.size();
  buf_.resize(old + read_chunk);
  auto [ec, n] = co_await g_->conn.read_some(asio::buffer(buf_.data() + old, read_chunk));
  buf_.resize(old + n);
  co_return ec;
}

// Reads heads until a final (non-1xx) one; keeps what follows it in buf_.
asio::awaitable<bool> exchange::read_head() {
  http::head_limits limits{max_head_bytes, max_headers};
  while (true) {
    std::size_t head_len = http::find_head_end(buf_);
    while (head_len == 0) {
      if (buf_.size() > max_head_bytes)
        co_return fail(common::cat("response head exceeds ", max_head_bytes, " bytes"));
      std::size_t scanned = buf_.size();
      auto ec = co_await read_more();
      if (ec == asio::error::eof && !g_->expired)
        co_return fail(buf_.empty() ? "connection closed before the response"
                                    : "connection closed mid-head");
      if (ec) co_return read_failed(ec, "waiting for the response");
      head_len = http::find_head_end(buf_, scanned);
    }
    if (head_len > max_head_bytes)
      co_return fail(common::cat("response head exceeds ", max_head_bytes, " bytes"));
    http::response_head head;
    http::parse_error err{};
    auto st = http::parse_response(std::string_view(buf_).substr(0, head_len), limits, headers_,
                                   "GET", head, err);
    if (st != http::parse_status::complete)
      co_return fail(common::cat("malformed response head: ", http::describe(err)));
    if (head.status == 101) co_return fail("unexpected 101 Switching Protocols");
    if (head.status >= 200) {
      r_.response_seconds = since(sent_at_);
      r_.status = head.status;
      r_.content_type = std::string(head.find("content-type"));
      body_kind_ = head.body;
      content_length_ = head.content_length;
      buf_.erase(0, head_len);  // `head` points into buf_: nothing of it is used past here
      co_return true;
    }
    buf_.erase(0, head_len);  // interim (100 Continue, 103 Early Hints): the real head follows
  }
}

bool exchange::append(std::string_view data) {
  if (data.size() > req_.max_body - r_.body.size())
    return fail(common::cat("body exceeds ", req_.max_body, " bytes"));
  r_.body.append(data);
  return true;
}

// Moves the body bytes in buf_ into the result: 1 when the body is complete, 0 when more is
// needed, -1 on an error (recorded). Bytes past the end of the body are dropped.
int exchange::take_body(http::chunked_decoder& dec) {
  std::string_view in(buf_);
  switch (body_kind_) {
    case http::body_kind::none:
      return 1;
    case http::body_kind::content_length: {
      auto want = content_length_ - r_.body.size();
      if (!append(in.substr(0, static_cast<std::size_t>(std::min<std::uint64_t>(want, in.size())))))
        return -1;
      return r_.body.size() == content_length_ ? 1 : 0;
    }
    case http::body_kind::chunked:
      while (!in.empty() && !dec.done() && !dec.failed()) {
        auto s = dec.decode(in);
        if (!append(s.data)) return -1;
        in.remove_prefix(s.consumed);
        if (s.consumed == 0) break;
      }
      if (dec.failed()) {
        fail(common::cat("malformed chunked body: ", dec.error()));
        return -1;
      }
      return dec.done() ? 1 : 0;
    case http::body_kind::until_close:
      return append(in) ? 0 : -1;
  }
  return -1;
}

asio::awaitable<bool> exchange::read_body() {
  if (body_kind_ == http::body_kind::content_length && content_length_ > req_.max_body)
    co_return fail(common::cat("body exceeds ", req_.max_body, " bytes"));
  http::chunked_decoder dec;
  while (true) {
    int st = take_body(dec);
    if (st != 0) co_return st > 0;
    buf_.clear();
    auto ec = co_await read_more();
    bool closed = ec == asio::error::eof && !g_->expired;
    if (closed && body_kind_ == http::body_kind::until_close) co_return true;
    if (closed) co_return fail("connection closed mid-body");
    if (ec) co_return read_failed(ec, "reading the body");
  }
}

}  // namespace

asio::awaitable<fetch_result> fetch(fetch_request req, const common::clock& clock) {
  auto ex = co_await asio::this_coro::executor;
  exchange x(std::move(req), clock, ex);
  co_await x.run();
  co_return x.take();
}

}  // namespace meridian::probe
