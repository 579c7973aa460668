#include "meridian/http/connection.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/intrusive_ptr.hpp>
#include <cerrno>
#include <cstring>
#include <tuple>

#include "http/byte_stream.hpp"
#include "meridian/common/log.hpp"
#include "meridian/http/headers.hpp"
#include "meridian/metrics/metrics.hpp"

namespace meridian::http {

using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
using common::error_kind;
using metrics::reject_reason;

namespace {
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
// Small enough that idle keep-alive clients cost little; grows for big heads and bodies and
// shrinks back between requests.
constexpr std::size_t initial_buffer = 4096;
constexpr std::size_t keep_buffer = 16 * 1024;
constexpr std::size_t read_chunk = 16 * 1024;

bool has_bare_lf(std::string_view v, std::size_t from) {
  for (std::size_t i = from; i < v.size(); ++i)
    if (v[i] == '\n' && (i == 0 || v[i - 1] != '\r')) return true;
  return false;
}
}  // namespace

template <class Stream>
basic_connection<Stream>::basic_connection(asio::io_context& io, Stream socket, connection_env& env,
                                           handler& h)
    : io_(io),
      socket_(std::move(socket)),
      env_(env),
      handler_(h),
      deadline_(io, *env.clock, &basic_connection::on_expire, this),
      buf_(initial_buffer),
      fields_(env.settings.limits.max_headers) {
  error_code ec;
  auto peer = lowest_layer().remote_endpoint(ec);
  client_ip_ = ec ? "unknown" : peer.address().to_string();
  if constexpr (secure) {
    tls_version_ = socket_.version();
    client_subject_ = socket_.client_subject();
  }
  lowest_layer().set_option(tcp::no_delay(true), ec);
  // What the kernel keeps unsent for a client, until it has shown it reads (lift_send_cap()):
  // a quarter MiB, not the megabytes send-buffer autotuning grows to. A client that stops reading
  // then costs that much (not its response's first megabytes, copied from the backend for
  // nothing), and writes wait on it sooner.
  constexpr int notsent_lowat = 256 * 1024;
  ::setsockopt(lowest_layer().native_handle(), IPPROTO_TCP, TCP_NOTSENT_LOWAT, &notsent_lowat,
               sizeof notsent_lowat);
  env_.open.fetch_add(1, std::memory_order_relaxed);
  if (env_.metrics) env_.metrics->active_connections().add();
}

template <class Stream>
basic_connection<Stream>::~basic_connection() {
  env_.open.fetch_sub(1, std::memory_order_relaxed);
  if (env_.metrics) env_.metrics->active_connections().sub();
}

template <class Stream>
void basic_connection<Stream>::start(asio::io_context& io, Stream socket, connection_env& env,
                                     handler& h, connection_host* tracked_by) {
  boost::intrusive_ptr<basic_connection> c(new basic_connection(io, std::move(socket), env, h));
  // Tracked before it runs: spawned from a coroutine on the same thread, it may run (and end)
  // before co_spawn returns.
  if (tracked_by) tracked_by->track(*c);
  asio::co_spawn(
      io,
      [](boost::intrusive_ptr<basic_connection> self) -> asio::awaitable<void> {
        co_await self->run();
      }(c),
      asio::detached);
}

template <class Stream>
void basic_connection<Stream>::on_expire(void* self) {
  auto* c = static_cast<basic_connection*>(self);
  error_code ignored;
  // A late body is answered (408) before the connection closes; anything else just closes.
  // Shut down, never closed or cancelled under the pending operation: it ends by itself (EOF,
  // EPIPE). Cancelling it let a later completion corrupt other requests on Asio 1.81's io_uring
  // backend (loadtest/RESULTS.md).
  if (c->answer_on_expiry_)
    c->lowest_layer().shutdown(tcp::socket::shutdown_receive, ignored);
  else
    c->lowest_layer().shutdown(tcp::socket::shutdown_both, ignored);
}

// ---- buffers ---------------------------------------------------------------------------------

template <class Stream>
void basic_connection<Stream>::make_room(std::size_t want) {
  if (begin_ == end_ && !head_kept_) begin_ = end_ = 0;
  if (buf_.size() - end_ >= want) return;
  if (begin_ > 0) {
    std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  if (buf_.size() - end_ < want) buf_.resize(std::max(buf_.size() * 2, end_ + want));
}

// Reads more client bytes; 0 on EOF, error or deadline. Moves the buffer: head views are renewed.
template <class Stream>
asio::awaitable<std::size_t> basic_connection<Stream>::read_some(std::size_t want) {
  make_room(std::max<std::size_t>(want, 1));
  auto [ec, n] = co_await byte_stream::read_some(socket_, asio::buffer(buf_.data() + end_, buf_.size() - end_));
  if (ec) co_return 0;
  end_ += n;
  bytes_in_ += n;
  if (head_kept_) reparse_head();
  co_return n;
}

template <class Stream>
bool basic_connection<Stream>::reparse_head() {
  parse_error err{};
  return parse_request({buf_.data() + begin_, head_len_}, env_.settings.limits, fields_, head_,
                       err) == parse_status::complete;
}

// ---- the request loop ------------------------------------------------------------------------

template <class Stream>
void basic_connection<Stream>::begin_request() {
  write_pace_s_ = std::chrono::duration<double>(env_.settings.rate_window).count();
  request_id_.clear();
  method_.clear();
  path_.clear();
  note_.clear();
  status_ = 0;
  response_started_ = false;
  extra_fields_ = {};
  head_pending_ = chunked_out_ = sized_ = response_open_ = false;
  bytes_in_ = end_ - begin_;
  bytes_out_ = 0;
  expect_continue_ = false;
  head_kept_ = false;
  head_len_ = 0;
  body_.start(body_kind::none, 0, 0);
  // A buffer grown by a big request goes back to its small size between requests.
  if (begin_ == end_ && buf_.size() > keep_buffer) {
    begin_ = end_ = 0;
    std::vector<char>(initial_buffer).swap(buf_);
  }
}

template <class Stream>
void basic_connection<Stream>::assign_request_id(std::string_view from_client) {
  make_request_id(request_id_, from_client, *env_.rng);
}

template <class Stream>
asio::awaitable<void> basic_connection<Stream>::reject(error_kind kind, int reason,
                                                       std::string_view message) {
  if (env_.metrics) env_.metrics->rejected(static_cast<reject_reason>(reason)).inc();
  keep_alive_ = false;
  co_await reply_error(kind, message);
  handler_.rejected(*this);
}

// Reads and checks one request head; false when the connection is done (EOF, deadline, or a
// rejected head, answered here).
template <class Stream>
asio::awaitable<bool> basic_connection<Stream>::read_head() {
  const auto& s = env_.settings;
  auto now = env_.clock->now();
  request_start_ = now;
  bool started = begin_ != end_;
  idle_ = !started;
  deadline_.set(now + (started ? s.header_timeout : s.idle_timeout));
  std::size_t head_len = find_head_end({buf_.data() + begin_, end_ - begin_});
  while (head_len == 0) {
    if (end_ - begin_ > s.limits.max_head_bytes) {
      co_await reject(error_kind::header_too_large, static_cast<int>(reject_reason::head_too_large),
                      "request head exceeds the size limit");
      co_return false;
    }
    if (env_.draining && !started) co_return false;
    std::size_t scanned = end_ - begin_;
    auto n = co_await read_some(4096);  // the head cap is checked above
    if (n == 0) {
      if (deadline_.expired() && started) {
        if (env_.metrics) env_.metrics->rejected(reject_reason::header_timeout).inc();
        common::log(common::log_level::debug, "http", "header timeout from ", client_ip_);
      }
      co_return false;
    }
    if (!started) {
      // A head that does not arrive whole gets an absolute deadline from its first byte, so a
      // client trickling bytes cannot hold the connection.
      started = true;
      idle_ = false;
      request_start_ = env_.clock->now();
      bytes_in_ = n;
      deadline_.set(request_start_ + s.header_timeout);
    }
    std::string_view v{buf_.data() + begin_, end_ - begin_};
    head_len = find_head_end(v, scanned);
    // A head terminated by bare LFs never shows CRLF CRLF: refuse it now, not at the deadline.
    if (head_len == 0 && has_bare_lf(v, scanned)) head_len = v.size();
  }
  idle_ = false;
  head_len_ = head_len;
  parse_error perr{};
  auto st = parse_request({buf_.data() + begin_, head_len}, s.limits, fields_, head_, perr);
  if (st != parse_status::complete) {
    bool size = perr == parse_error::head_too_large || perr == parse_error::too_many_headers;
    common::log(common::log_level::debug, "http", "bad request from ", client_ip_, ": ",
                describe(perr));
    co_await reject(
        size ? error_kind::header_too_large : error_kind::bad_request,
        static_cast<int>(size ? reject_reason::head_too_large : reject_reason::bad_request),
        describe(perr));
    co_return false;
  }
  head_kept_ = true;
  assign_request_id(head_.find("x-request-id"));
  method_.assign(head_.method);
  path_.assign(head_.path);
  keep_alive_ = head_.keep_alive;
  expect_continue_ = head_.expect_continue;
  if (head_.body == body_kind::content_length && head_.content_length > s.max_body_bytes) {
    std::string msg = common::cat("request body of ", head_.content_length,
                                  " bytes exceeds the limit of ", s.max_body_bytes);
    co_await reject(error_kind::payload_too_large, static_cast<int>(reject_reason::body_too_large),
                    msg);
    co_return false;
  }
  body_.start(head_.body, head_.content_length, s.max_body_bytes);
  // The whole body, however slowly it comes, must arrive within the body timeout.
  body_deadline_ = env_.clock->now() + s.body_timeout;
  body_pace_s_ = std::chrono::duration<double>(s.rate_window).count();
  deadline_.clear();
  co_return true;
}

template <class Stream>
asio::awaitable<void> basic_connection<Stream>::run() {
  while (!closed_) {
    begin_request();
    bool got = co_await read_head();
    if (!got) break;
    waiting_ = true;
    co_await handler_.serve(*this);
    waiting_ = false;
    unwatch_client();
    deadline_.clear();
    // An unread body, or a response broken off (no terminating chunk): nothing can follow.
    if (!body_.finished() || response_open_) keep_alive_ = false;
    if (!keep_alive()) break;
    if (head_kept_) {
      begin_ += head_len_;
      head_kept_ = false;
    }
  }
  closed_ = true;
  unwatch_client();
  deadline_.clear();
  error_code ignored;
  byte_stream::say_goodbye(socket_);
  lowest_layer().shutdown(tcp::socket::shutdown_send, ignored);
  // A client-gone watch still armed must end before the socket closes (closing under it let
  // its completion land on another socket on Asio 1.81's io_uring backend: connects failing
  // with EBADF, responses never closed, under a burst of 4,000 connections). Shut down, the
  // wait ends, its handler lets go of this connection and the destructor closes the socket.
  if (watch_pending_)
    lowest_layer().shutdown(tcp::socket::shutdown_receive, ignored);
  else
    lowest_layer().close(ignored);
  if (is_linked()) unlink();
}

template <class Stream>
bool basic_connection<Stream>::keep_alive() const {
  return keep_alive_ && !env_.draining && !closed_ && !client_gone_;
}

// ---- the request body ------------------------------------------------------------------------

template <class Stream>
std::string_view basic_connection<Stream>::buffered_body() const {
  std::size_t at = begin_ + (head_kept_ ? head_len_ : 0);
  return {buf_.data() + at, body_.validated()};
}

template <class Stream>
std::string_view basic_connection<Stream>::body_error() const {
  return body_.error();
}

template <class Stream>
void basic_connection<Stream>::consume_body() {
  if (head_kept_) {
    begin_ += head_len_;
    head_kept_ = false;
  }
  begin_ += body_.validated();
  body_.consume_all();
}

template <class Stream>
asio::awaitable<bool> basic_connection<Stream>::send_continue() {
  expect_continue_ = false;
  static constexpr std::string_view cont = "HTTP/1.1 100 Continue\r\n\r\n";
  std::array<asio::const_buffer, 1> b{asio::buffer(cont)};
  co_return co_await write(b);
}

template <class Stream>
common::duration basic_connection<Stream>::pace_left(double budget_s) {
  return std::chrono::duration_cast<common::duration>(
      std::chrono::duration<double>(std::max(0.0, budget_s)));
}

template <class Stream>
void basic_connection<Stream>::paced(double& budget_s, common::duration waited,
                                     std::size_t bytes) const {
  const auto& s = env_.settings;
  if (s.min_rate == 0) return;
  double window = std::chrono::duration<double>(s.rate_window).count();
  budget_s = std::min(window, budget_s - std::chrono::duration<double>(waited).count() +
                                  static_cast<double>(bytes) / static_cast<double>(s.min_rate));
}

// Reads more body bytes under the body deadline, and the client's pace (settings.min_rate).
template <class Stream>
asio::awaitable<body_result> basic_connection<Stream>::read_body_bytes() {
  if (expect_continue_) {
    bool sent = co_await send_continue();
    if (!sent) co_return body_result::client_gone;
  }
  const auto& s = env_.settings;
  auto start = env_.clock->now();
  auto paced_until = start + pace_left(body_pace_s_);
  bool by_pace = s.min_rate > 0 && paced_until < body_deadline_;
  deadline_.set(by_pace ? paced_until : body_deadline_);
  answer_on_expiry_ = true;
  auto n = co_await read_some(read_chunk);
  answer_on_expiry_ = false;
  deadline_.clear();
  paced(body_pace_s_, env_.clock->now() - start, n);
  if (n != 0) co_return body_result::ok;
  if (deadline_.expired()) {
    note_ = by_pace ? common::cat("request body slower than ", s.min_rate, " bytes/s")
                    : std::string("request body timeout");
    co_return body_result::timeout;
  }
  client_gone_ = true;
  note_ = "client closed during the request body";
  co_return body_result::client_gone;
}

template <class Stream>
bool basic_connection<Stream>::body_buffered(std::size_t want) {
  std::size_t at = begin_ + (head_kept_ ? head_len_ : 0);
  auto st = body_.validate({buf_.data() + at, end_ - at});
  return st == request_body::status::complete ||
         (st == request_body::status::more && body_.validated() >= want);
}

template <class Stream>
asio::awaitable<body_result> basic_connection<Stream>::buffer_body(std::size_t want) {
  while (true) {
    std::size_t at = begin_ + (head_kept_ ? head_len_ : 0);
    auto st = body_.validate({buf_.data() + at, end_ - at});
    if (st == request_body::status::malformed || st == request_body::status::too_large)
      co_return body_result_of(st);
    if (st == request_body::status::complete || body_.validated() >= want)
      co_return body_result::ok;
    auto r = co_await read_body_bytes();
    if (r != body_result::ok) co_return r;
  }
}

template <class Stream>
asio::awaitable<body_result> basic_connection<Stream>::read_body(std::span<std::string_view> spans,
                                                                 std::size_t& n) {
  n = 0;
  if (head_kept_) {
    begin_ += head_len_;
    head_kept_ = false;
  }
  while (true) {
    std::string_view raw{buf_.data() + begin_, end_ - begin_};
    auto st = body_.validate(raw);
    if (st == request_body::status::malformed || st == request_body::status::too_large)
      co_return body_result_of(st);
    if (body_.validated() > 0) {
      begin_ += body_.take(raw, spans.data(), spans.size(), n);
      if (n > 0) co_return body_result::ok;
      continue;
    }
    if (body_.finished()) co_return body_result::ok;
    auto r = co_await read_body_bytes();
    if (r != body_result::ok) co_return r;
  }
}

// ---- the client-gone watch -------------------------------------------------------------------

template <class Stream>
void basic_connection<Stream>::watch_client(cancellable* target) {
  watch_target_ = target;
}

template <class Stream>
void basic_connection<Stream>::unwatch_client() {
  watch_target_ = nullptr;
}

template <class Stream>
void basic_connection<Stream>::tick() {
  if (waiting_ && watch_target_ && !watch_pending_ && !closed_) start_watch();
}

// The wait is never cancelled: it stays armed until the client socket turns readable (the next
// request, or EOF) or closes, and watch_target_ says whether that still matters. Cancelling a
// pending wait corrupted later reads on Asio 1.81's io_uring backend (loadtest/RESULTS.md).
template <class Stream>
void basic_connection<Stream>::start_watch() {
  watch_pending_ = true;
  boost::intrusive_ptr<basic_connection> self(this);
  lowest_layer().async_wait(tcp::socket::wait_read, [self](error_code ec) {
    basic_connection& c = *self;
    c.watch_pending_ = false;
    if (ec || !c.watch_target_ || c.closed_) return;
    int state = byte_stream::peek_client(c.socket_);
    if (state == 0) {
      // The client closed: stop the backend's work at once.
      c.client_gone_ = true;
      c.watch_target_->cancel();
    } else if (state < 0) {
      c.start_watch();  // spurious wake-up (or only TLS records without data)
    }
    // 1: a pipelined request is waiting; it is read after this response.
  });
}

template <class Stream>
void basic_connection<Stream>::close_if_idle() {
  if (idle_ && begin_ == end_) {
    error_code ignored;
    lowest_layer().shutdown(tcp::socket::shutdown_both, ignored);  // the pending read ends: EOF
  }
}

template <class Stream>
void basic_connection<Stream>::abort() {
  error_code ignored;
  lowest_layer().shutdown(tcp::socket::shutdown_both, ignored);
  if (watch_target_) watch_target_->cancel();
}

template class basic_connection<asio::ip::tcp::socket>;
template class basic_connection<tls::stream>;

}  // namespace meridian::http
