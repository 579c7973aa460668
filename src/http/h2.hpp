// The HTTP/2 codec, server side (RFC 9113), on libnghttp2: framing, HPACK and flow control are
// the library's; what a stream means is ours. Each request stream is an http::exchange served by
// the connection's handler, concurrently with the others; the connection is a session its host
// ticks, drains (GOAWAY, open streams finish) and aborts. Private to the http_server module
// (accept.cpp starts it); one worker thread.
#pragma once

#include <nghttp2/nghttp2.h>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "meridian/http/exchange.hpp"
#include "meridian/http/host.hpp"
#include "meridian/http/request_body.hpp"
#include "meridian/metrics/metrics.hpp"
#include "meridian/runtime/timer.hpp"
#include "meridian/runtime/watchdog.hpp"
#include "meridian/tls/stream.hpp"

namespace meridian::http::h2 {

namespace asio = boost::asio;

// A client's RST_STREAMs: a bucket of 200, refilled at 100 a second (CVE-2023-44487: opening
// and cancelling streams without end). nghttp2's own limiter stays behind it at twice that.
inline constexpr double reset_burst = 200, reset_rate = 100;
// SETTINGS, PING, WINDOW_UPDATE, PRIORITY and RST_STREAM frames in one second, and DATA frames
// in a row that carry nothing and do not end their stream.
inline constexpr std::uint32_t control_per_second = 1000, empty_data_in_a_row = 100;
// Why a GOAWAY or RST_STREAM with this HTTP/2 error code went out.
metrics::h2_reason reason_of_code(std::uint32_t code);

// The client connection preface (RFC 9113 3.4), which h2c with prior knowledge starts with.
inline constexpr std::string_view preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// Starts serving an HTTP/2 connection (h2 after ALPN, or h2c with prior knowledge) on `io`.
void start(asio::io_context& io, asio::ip::tcp::socket socket, connection_env& env, handler& h,
           connection_host* tracked_by);
void start(asio::io_context& io, tls::stream stream, connection_env& env, handler& h,
           connection_host* tracked_by);

class core;

// One request stream as the handler sees it.
class stream final : public exchange {
 public:
  stream(core& c, std::int32_t id);
  ~stream();
  // Ready for a new request stream `id`: every per-request field as new, the buffers' capacity
  // kept (a connection's streams are recycled: no allocation per request once warm).
  void reuse(std::int32_t id);

  const request_head& head() const override { return head_; }
  std::string_view request_id() const override { return request_id_; }
  std::string_view method() const override { return method_; }
  std::string_view path() const override { return path_; }
  common::time_point request_start() const override { return request_start_; }
  std::string_view client_ip() const override;
  std::string_view scheme() const override;
  std::string_view tls_version() const override;
  std::string_view client_subject() const override;
  std::string_view protocol() const override { return "h2"; }

  const request_body& body() const override { return body_; }
  asio::awaitable<body_result> buffer_body(std::size_t want) override;
  bool body_buffered(std::size_t want) override;
  std::string_view buffered_body() const override;
  void consume_body() override;
  asio::awaitable<body_result> read_body(std::span<std::string_view> spans,
                                         std::size_t& n) override;
  std::string_view body_error() const override { return body_.error(); }
  void extend_body_deadline(common::time_point until) override {
    body_deadline_ = std::max(body_deadline_, until);
    wake();
  }

  void start_response(const response_head& head, body_kind body, std::uint64_t length) override;
  asio::awaitable<bool> send(std::span<const std::string_view> payload, bool last) override;
  void set_trailers(std::span<const header> fields) override;
  void add_response_fields(std::span<const header> fields) override { extra_fields_ = fields; }
  bool response_sized() const override { return sized_; }
  asio::awaitable<void> reply_error(common::error_kind kind, std::string_view message) override;
  asio::awaitable<void> reply(int status, std::string_view content_type, std::string_view body,
                              std::string_view allow = {}) override;
  void close_after_response() override {}  // the stream ends with its response anyway

  void watch_client(cancellable* target) override;
  void unwatch_client() override { watch_ = nullptr; }
  bool client_gone() const override { return gone_; }

  int status() const override { return status_; }
  std::uint64_t bytes_in() const override { return bytes_in_; }
  std::uint64_t bytes_out() const override { return bytes_out_; }
  std::string_view note() const override { return note_; }
  void set_note(std::string_view why) override { note_.assign(why); }

 private:
  friend class core;
  // ---- fed by the connection (nghttp2's callbacks) ----
  // A header field of the request (or its trailers); false: the list is far past the limit.
  bool add_field(std::string_view name, std::string_view value, bool trailer);
  // The head is complete: builds the request head; false when it is refused (answered by serve).
  void finish_head(bool end_stream);
  void add_data(const std::uint8_t* data, std::size_t len);
  void end_body();
  // The stream closed in nghttp2 (ended, or reset by either side).
  void closed(std::uint32_t error_code);
  // The connection went (nghttp2 may still hold the stream until the session goes).
  void lost();
  // nghttp2 asks for the response's next DATA bytes.
  ssize_t read_out(std::uint8_t* buf, std::size_t length, std::uint32_t* flags);
  asio::awaitable<void> serve();

  // Wakes a wait of this stream's (body arrived, response bytes taken, the stream closed).
  void wake();
  // Waits until woken or `deadline` (false: the deadline passed).
  asio::awaitable<bool> wait_until(common::time_point deadline);
  // Stream-level flow control: returns received body bytes to the client's window while what
  // is buffered stays within the stream's allowance.
  void ack();
  void take_out_of_buffer(std::size_t n);
  // Submits the response head (with the body to come as DATA, or none).
  void submit(bool with_body);
  void add_response_field(std::string_view name, std::string_view value);
  asio::awaitable<void> reply(int status, std::string_view content_type, std::string_view body,
                              std::string_view allow, int retry_after_s);
  void reset(std::uint32_t code, metrics::h2_reason why);
  bool has_reason_ = false;  // the gateway reset it for reset_reason_
  metrics::h2_reason reset_reason_ = metrics::h2_reason::other;
  bool queued_ = false;   // in core::ready_, not yet served
  std::size_t slot_ = 0;  // its place in core::live_

  core& c_;
  std::int32_t id_;
  // The request: header fields in one arena (name, value pairs), turned into views when the
  // head is complete.
  std::string arena_;
  std::vector<std::pair<std::uint32_t, std::uint32_t>> spans_;  // offset, length of each string
  std::vector<header> fields_;
  std::string_view pseudo_method_, pseudo_path_, pseudo_authority_, pseudo_scheme_;
  std::size_t list_bytes_ = 0;
  std::size_t field_count_ = 0;
  bool refused_size_ = false;
  request_head head_;
  std::string request_id_, method_, path_, note_, cookies_;
  common::time_point request_start_, body_deadline_;
  // The body as buffered: the payload (content-length) or the payload framed as chunks (no
  // declared length), so the handler sees the same framings as over HTTP/1.1.
  request_body body_;
  std::string raw_, taken_;
  std::size_t begin_ = 0;
  std::size_t unacked_ = 0;  // received bytes not yet returned to the stream's window
  std::size_t want_ = 0;     // what the handler waits to have buffered
  std::uint64_t payload_in_ = 0;
  bool too_large_ = false;   // more body than max_body_bytes arrived (not buffered)
  bool end_stream_ = false;  // the client sent all of its request

  // The response: its head (names lower-cased, in one store) and the DATA not yet framed.
  std::string hstore_;
  std::vector<std::pair<std::uint32_t, std::uint32_t>> hspans_;
  std::vector<nghttp2_nv> nva_;
  std::string out_;
  std::size_t out_begin_ = 0;
  std::size_t out_taken_ = 0;  // response bytes nghttp2 has framed, in all
  std::span<const header> extra_fields_;  // add_response_fields
  // Trailers after the last DATA (set_trailers), names lower-cased.
  std::string tstore_;
  std::vector<std::pair<std::uint32_t, std::uint32_t>> tspans_;
  std::vector<nghttp2_nv> tnva_;
  bool has_trailers_ = false;
  bool response_started_ = false, submitted_ = false, last_ = false, sized_ = false;
  bool head_only_ = false, broken_ = false, response_done_ = false;
  int status_ = 0;
  std::uint64_t bytes_in_ = 0, bytes_out_ = 0;

  runtime::timer wake_;
  bool waiting_ = false;
  cancellable* watch_ = nullptr;
  bool gone_ = false;       // the client reset the stream or the connection went
  bool serving_ = false;    // handler::serve runs
  bool h2_closed_ = false;  // nghttp2 is done with it
};

// The connection without its byte stream (conn<S> in h2.cpp adds the reads and writes).
class core : public session {
 public:
  core(asio::io_context& io, connection_env& env, handler& h, std::string client_ip, bool secure,
       std::string_view tls_version, std::string client_subject);
  virtual ~core();

  void tick() override {}
  void close_if_idle() override;
  void abort() override;

 protected:
  friend class stream;
  friend void intrusive_ptr_add_ref(core* c) { ++c->refs_; }
  friend void intrusive_ptr_release(core* c) {
    if (--c->refs_ == 0) delete c;
  }
  // The client's bytes into nghttp2; false: the connection ends (GOAWAY queued where one fits).
  bool receive(const std::uint8_t* data, std::size_t n);
  // Serializes what nghttp2 has to send into `out` (up to ~64 KiB).
  bool collect(std::string& out);
  void wake_writer();
  asio::awaitable<bool> writer_wait();
  void spawn_ready();
  void end_all_streams();
  void goaway(std::uint32_t code, metrics::h2_reason why);
  void terminate(std::uint32_t code, metrics::h2_reason why);
  void update_deadline();
  bool done() const;
  static void on_expire(void* self);
  static void on_write_expire(void* self);
  // Both directions, or only ours (the client's bytes are still read and dropped).
  virtual void shutdown_socket(bool both) = 0;
  void release(stream* s);
  bool count_control_frame();
  // Counts why the connection ended (meridian_http2_goaway_total), once.
  void note_end(metrics::h2_reason why);
  bool end_counted_ = false;

  static int on_begin_headers(nghttp2_session*, const nghttp2_frame*, void*);
  static int on_header(nghttp2_session*, const nghttp2_frame*, const std::uint8_t*, std::size_t,
                       const std::uint8_t*, std::size_t, std::uint8_t, void*);
  static int on_frame_recv(nghttp2_session*, const nghttp2_frame*, void*);
  static int on_data_chunk(nghttp2_session*, std::uint8_t, std::int32_t, const std::uint8_t*,
                           std::size_t, void*);
  static int on_stream_close(nghttp2_session*, std::int32_t, std::uint32_t, void*);
  static int on_frame_send(nghttp2_session*, const nghttp2_frame*, void*);
  static ssize_t read_data(nghttp2_session*, std::int32_t, std::uint8_t*, std::size_t,
                           std::uint32_t*, nghttp2_data_source*, void*);

  asio::io_context& io_;
  connection_env& env_;
  handler& handler_;
  std::string client_ip_, client_subject_;
  std::string_view tls_version_;
  bool secure_;
  nghttp2_session* session_ = nullptr;
  int refs_ = 0;
  std::vector<std::unique_ptr<stream>> live_;   // streams nghttp2 or a handler still holds
  std::vector<std::unique_ptr<stream>> spare_;  // released ones, for the next streams
  std::vector<stream*> ready_;  // heads complete in this read: served once it is processed
  std::size_t serving_ = 0;     // streams whose handler runs (reset ones included)
  runtime::watchdog deadline_;  // idle (no stream) or a header block in progress
  runtime::watchdog write_deadline_;
  runtime::timer writer_wake_;
  bool writer_waiting_ = false;
  bool closing_ = false;  // no more reads: flush what is queued, then close
  bool closed_ = false;   // the writer is done
  bool reader_done_ = false;
  bool goaway_sent_ = false;
  bool headers_pending_ = false;
  metrics::h2_reason end_reason_ = metrics::h2_reason::other;
  bool end_reason_set_ = false;
  // Rapid reset: the client's RST_STREAMs in a token bucket; control frames per second.
  double reset_tokens_;
  common::time_point reset_at_{}, control_window_{};
  std::uint32_t control_frames_ = 0, empty_data_ = 0;
};

}  // namespace meridian::http::h2
