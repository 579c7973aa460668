// http::connection: the HTTP/1.1 codec, server side, of one client connection. It reads and
// checks request heads (limits, deadlines), keeps the connection alive and in order (pipelining,
// 100-continue, drain), frames and checks request bodies, frames responses and the gateway's own
// error replies, and watches for a client that leaves. Each request is an http::exchange handed
// to an injected handler; what it means is not the codec's business. Owned by one worker thread.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "meridian/common/clock.hpp"
#include "meridian/common/error.hpp"
#include "meridian/common/random.hpp"
#include "meridian/http/exchange.hpp"
#include "meridian/http/host.hpp"
#include "meridian/http/parser.hpp"
#include "meridian/http/request_body.hpp"
#include "meridian/runtime/watchdog.hpp"
#include "meridian/tls/stream.hpp"

namespace meridian::http {

namespace asio = boost::asio;

// The byte streams under the codec: a TCP socket, or TLS over one (tls/stream.hpp). Their
// lowest_layer() is the socket that deadlines shut down and the client watch waits on.
inline asio::ip::tcp::socket& lowest_layer_of(asio::ip::tcp::socket& s) {
  return s;
}
using tls::lowest_layer_of;

template <class Stream>
class basic_connection final : public session, public exchange {
 public:
  static constexpr bool secure = !std::is_same_v<Stream, asio::ip::tcp::socket>;
  // Starts serving `stream` on `io`, tracked by `tracked_by` (if any) from the start; the
  // connection owns itself until the client is gone.
  static void start(asio::io_context& io, Stream stream, connection_env& env, handler& h,
                    connection_host* tracked_by = nullptr);

  // ---- the exchange of the request being served (valid during handler::serve) ----
  const request_head& head() const override { return head_; }
  std::string_view request_id() const override { return request_id_; }
  std::string_view method() const override { return method_; }
  std::string_view path() const override { return path_; }
  common::time_point request_start() const override { return request_start_; }
  std::string_view client_ip() const override { return client_ip_; }
  std::string_view scheme() const override { return secure ? "https" : "http"; }
  std::string_view tls_version() const override { return tls_version_; }
  std::string_view client_subject() const override { return client_subject_; }
  std::string_view protocol() const override {
    return head_.version_minor == 0 ? "http/1.0" : "http/1.1";
  }

  const request_body& body() const override { return body_; }
  asio::awaitable<body_result> buffer_body(std::size_t want) override;
  bool body_buffered(std::size_t want) override;
  std::string_view buffered_body() const override;
  void consume_body() override;
  asio::awaitable<body_result> read_body(std::span<std::string_view> spans,
                                         std::size_t& n) override;
  std::string_view body_error() const override;

  void start_response(const response_head& head, body_kind body, std::uint64_t length) override;
  asio::awaitable<bool> send(std::span<const std::string_view> payload, bool last) override;
  bool response_sized() const override { return sized_; }
  asio::awaitable<void> reply_error(common::error_kind kind, std::string_view message) override;
  void add_response_fields(std::span<const header> fields) override { extra_fields_ = fields; }
  asio::awaitable<void> reply(int status, std::string_view content_type, std::string_view body,
                              std::string_view allow = {}) override;
  void close_after_response() override { keep_alive_ = false; }

  void watch_client(cancellable* target) override;
  void unwatch_client() override;
  bool client_gone() const override { return client_gone_; }

  int status() const override { return response_started_ ? status_ : 0; }
  std::uint64_t bytes_in() const override { return bytes_in_; }
  std::uint64_t bytes_out() const override { return bytes_out_; }
  std::string_view note() const override { return note_; }
  void set_note(std::string_view why) override { note_.assign(why); }

  // Whether this connection may carry another request after this response.
  bool keep_alive() const;
  const connection_env& env() const { return env_; }

  // Worker control (worker thread).
  void close_if_idle() override;
  void abort() override;
  // Arms the client-gone watch if the request is waiting on a backend (housekeeping tick).
  void tick() override;

  ~basic_connection();

 private:
  basic_connection(asio::io_context& io, Stream stream, connection_env& env, handler& h);
  asio::ip::tcp::socket& lowest_layer() { return lowest_layer_of(socket_); }
  asio::awaitable<void> run();
  // Writes response bytes under the idle deadline and the client's pace; false when it is gone.
  asio::awaitable<bool> write(std::span<const asio::const_buffer> buffers);
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
  friend void intrusive_ptr_add_ref(basic_connection* c) { ++c->refs_; }
  friend void intrusive_ptr_release(basic_connection* c) {
    if (--c->refs_ == 0) delete c;
  }

  asio::io_context& io_;
  Stream socket_;
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
  std::string_view tls_version_;  // OpenSSL's static name of the version, over TLS
  std::string client_subject_;
  common::time_point request_start_, body_deadline_;
  double body_pace_s_ = 0;                // see pace_left(): refilled when a request's body starts
  double write_pace_s_ = 0;               // and when its head has been read, for its response
  common::time_point write_progress_at_;  // the last progress of the write in flight
  std::size_t write_progress_ = 0;        // its bytes written so far
  bool send_cap_lifted_ = false;          // the client read 4 MiB: no TCP_NOTSENT_LOWAT cap
  std::uint64_t bytes_in_ = 0, bytes_out_ = 0;
  int status_ = 0;
  bool response_started_ = false;
  std::span<const header> extra_fields_;  // add_response_fields, for this request's response
  // The response being sent (start_response): its serialized head not yet written, whether it
  // is chunked for the client, declared its length, and has not ended yet.
  bool head_pending_ = false, chunked_out_ = false, sized_ = false, response_open_ = false;
  std::vector<asio::const_buffer> wout_;
  std::string chunk_heads_;
  bool keep_alive_ = true;
  bool closed_ = false;
  bool waiting_ = false;  // inside handler::serve
  bool idle_ = true;      // between requests with nothing buffered

  cancellable* watch_target_ = nullptr;
  bool watch_pending_ = false;
  bool client_gone_ = false;
};

// The HTTP/1.1 codec over plain TCP and over TLS (defined in connection.cpp).
extern template class basic_connection<asio::ip::tcp::socket>;
extern template class basic_connection<tls::stream>;
using connection = basic_connection<asio::ip::tcp::socket>;

}  // namespace meridian::http
