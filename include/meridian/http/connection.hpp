// http::connection: the downstream HTTP/1.1 server side of one client connection. It reads and
// checks request heads (limits, deadlines), keeps the connection alive and in order (pipelining,
// 100-continue, drain), frames and checks request bodies, writes responses and the gateway's own
// error replies, and watches for a client that leaves. What a request means is not its business:
// it calls an injected handler once per request. Owned by one worker thread.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/intrusive/list_hook.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "meridian/common/clock.hpp"
#include "meridian/common/error.hpp"
#include "meridian/common/random.hpp"
#include "meridian/http/parser.hpp"
#include "meridian/http/request_body.hpp"
#include "meridian/runtime/watchdog.hpp"

namespace meridian::metrics {
class worker_metrics;
}

namespace meridian::http {

namespace asio = boost::asio;

struct connection_settings {
  head_limits limits;
  std::uint64_t max_body_bytes = 32 * 1024 * 1024;
  common::duration header_timeout = std::chrono::seconds(10);  // absolute, from the first byte
  common::duration body_timeout = std::chrono::seconds(30);    // absolute, from the head's end
  common::duration idle_timeout = std::chrono::seconds(60);    // keep-alive, and each write
  // The slowest a client may move a body (its request body in, a response out) once it has
  // used up `rate_window` of waiting: each byte earns 1/min_rate seconds of waiting, never more
  // than the window. 0: no floor. Below it: 408 (request), the connection closed (response).
  std::uint64_t min_rate = 0;
  common::duration rate_window = std::chrono::seconds(10);
};

class connection;

// What a listener plugs into its connections. Called on the worker thread.
class handler {
 public:
  virtual ~handler() = default;
  // Serves one request whose head has been read and checked. The handler answers through the
  // connection (write_response_head/write or reply_error); whatever it leaves unread of the body
  // makes the connection close after the response.
  virtual asio::awaitable<void> serve(connection& c) = 0;
  // After every request, also those the connection rejected itself (logs, metrics).
  virtual void finished(connection& c) = 0;
};

// A handler's per-connection state (buffers reused across requests), created on first use.
struct connection_state {
  virtual ~connection_state() = default;
};

// Something to stop when the client leaves (an upstream attempt).
class cancellable {
 public:
  virtual void cancel() = 0;

 protected:
  ~cancellable() = default;
};

// Per-worker things every connection of a listener shares.
struct connection_env {
  connection_settings settings;
  const common::clock* clock = &common::steady();
  common::random_source* rng = nullptr;
  metrics::worker_metrics* metrics = nullptr;  // null: not counted (admin)
  bool draining = false;                       // set by the worker: finish, then close
  std::atomic<std::size_t> open{0};            // connections alive (read by the control thread)
};

enum class body_result { ok, malformed, too_large, timeout, client_gone };

using list_hook =
    boost::intrusive::list_base_hook<boost::intrusive::link_mode<boost::intrusive::auto_unlink>>;

class connection : public list_hook {
 public:
  // Starts serving `socket` on `io`; the connection owns itself until the client is gone.
  static connection& start(asio::io_context& io, asio::ip::tcp::socket socket, connection_env& env,
                           handler& h);

  // ---- the request (valid during handler::serve) ----
  const request_head& head() const { return head_; }
  std::string_view request_id() const { return request_id_; }
  std::string_view client_ip() const { return client_ip_; }
  std::string_view method() const { return method_; }
  std::string_view path() const { return path_; }
  common::time_point request_start() const { return request_start_; }
  const connection_env& env() const { return env_; }

  // ---- the request body ----
  const request_body& body() const { return body_; }
  // Reads until `want` raw body bytes are buffered (or the whole body, if smaller), checking
  // each byte's framing on arrival; the head stays readable. Nothing is consumed.
  asio::awaitable<body_result> buffer_body(std::size_t want);
  // True when buffer_body(want) would find what it needs without reading (checks the bytes).
  bool body_buffered(std::size_t want);
  // The raw body bytes buffered and checked so far (consumed ones excluded).
  std::string_view buffered_body() const;
  // Marks the whole buffered body consumed (it was sent whole and answered).
  void consume_body();
  // Streams: decodes buffered, checked body bytes into payload spans (reading more first when
  // none are buffered) and consumes them. The spans stay valid until the next call. The head
  // is no longer readable afterwards. n == 0 with ok means the body ended.
  asio::awaitable<body_result> read_body(std::span<std::string_view> spans, std::size_t& n);
  std::string_view body_error() const;

  // ---- the response ----
  // Writes response bytes under the idle deadline; false when the client is gone.
  asio::awaitable<bool> write(std::span<const asio::const_buffer> buffers);
  // The status of the response the handler started (for the log and keep-alive decisions).
  void response_started(int status) {
    status_ = status;
    response_started_ = true;
  }
  // Whether this connection may carry another request after this response.
  bool keep_alive() const;
  void close_after_response() { keep_alive_ = false; }
  int client_minor() const { return head_.version_minor; }
  // The gateway's own OpenAI-shaped answer; closes the connection afterwards if the request
  // body was not consumed (the next bytes could not be trusted to start a request).
  asio::awaitable<void> reply_error(common::error_kind kind, std::string_view message);
  // A complete local response (admin pages).
  // `allow`: the Allow header of a 405.
  asio::awaitable<void> reply(int status, std::string_view content_type, std::string_view body,
                              std::string_view allow = {});

  // ---- the client-gone watch ----
  // While a backend works on the request, `target` is cancelled if the client disconnects.
  void watch_client(cancellable* target);
  void unwatch_client();
  bool client_gone() const { return client_gone_; }

  // ---- facts for the handler's log ----
  int status() const { return response_started_ ? status_ : 0; }
  std::uint64_t bytes_in() const { return bytes_in_; }
  std::uint64_t bytes_out() const { return bytes_out_; }
  std::string_view note() const { return note_; }
  void set_note(std::string_view why) { note_.assign(why); }

  std::unique_ptr<connection_state>& state() { return state_; }

  // Worker control (worker thread).
  void close_if_idle();
  void abort();
  // Arms the client-gone watch if the request is waiting on a backend (housekeeping tick).
  void tick();

  ~connection();

 private:
  connection(asio::io_context& io, asio::ip::tcp::socket socket, connection_env& env, handler& h);
  asio::awaitable<void> run();
  asio::awaitable<bool> read_head();
  asio::awaitable<void> reject(common::error_kind kind, int reason, std::string_view message);
  asio::awaitable<std::size_t> read_some(std::size_t want);
  asio::awaitable<bool> send_continue();
  asio::awaitable<body_result> read_body_bytes();
  void begin_request();
  void assign_request_id(std::string_view from_client);
  bool reparse_head();
  void skip_buffered_body();
  void make_room(std::size_t want);
  void start_watch();
  static void on_expire(void* self);
  // The waiting a transfer may still do at the client's pace (settings.min_rate), from its
  // budget (reading the body, or writing the response), and the budget's update after `waited`
  // spent to move `bytes`.
  static common::duration pace_left(double budget_s);
  void paced(double& budget_s, common::duration waited, std::size_t bytes) const;
  static void on_write_progress(void* self, std::size_t total);
  friend void intrusive_ptr_add_ref(connection* c) { ++c->refs_; }
  friend void intrusive_ptr_release(connection* c);

  asio::io_context& io_;
  asio::ip::tcp::socket socket_;
  connection_env& env_;
  handler& handler_;
  runtime::watchdog deadline_;
  int refs_ = 0;

  // Client bytes: [begin_, end_) of buf_ are read and not yet consumed; while the head is kept,
  // it is the first head_len_ of them.
  std::vector<char> buf_;
  std::size_t begin_ = 0, end_ = 0, head_len_ = 0;
  bool head_kept_ = false;
  std::vector<header> fields_;
  request_head head_;
  request_body body_;
  bool expect_continue_ = false;
  bool answer_on_expiry_ = false;

  std::string request_id_, method_, path_, client_ip_, out_, note_;
  common::time_point request_start_, body_deadline_;
  double body_pace_s_ = 0;                // see pace_left(): refilled when a request's body starts
  double write_pace_s_ = 0;               // and when its head has been read, for its response
  common::time_point write_progress_at_;  // the last progress of the write in flight
  std::size_t write_progress_ = 0;        // its bytes written so far
  bool send_cap_lifted_ = false;          // the client read 4 MiB: no TCP_NOTSENT_LOWAT cap
  std::uint64_t bytes_in_ = 0, bytes_out_ = 0;
  int status_ = 0;
  bool response_started_ = false;
  bool keep_alive_ = true;
  bool closed_ = false;
  bool waiting_ = false;  // inside handler::serve
  bool idle_ = true;      // between requests with nothing buffered

  cancellable* watch_target_ = nullptr;
  bool watch_pending_ = false;
  bool client_gone_ = false;
  std::unique_ptr<connection_state> state_;
};

}  // namespace meridian::http
