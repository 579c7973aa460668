// The HTTP/2 connection: nghttp2's server session between a reader (client bytes into the
// session) and a writer (what the session has to send, gathered into one write), the streams'
// lifetimes, and the limits that give every known attack a bounded cost and a clear end. The
// stream half (the exchange) is in h2_stream.cpp.
#include "http/h2.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/intrusive_ptr.hpp>
#include <algorithm>
#include <array>

#include "http/byte_stream.hpp"
#include "meridian/common/log.hpp"

namespace meridian::http::h2 {

using tcp = asio::ip::tcp;
using metrics::h2_reason;
using error_code = boost::system::error_code;

namespace {
constexpr std::size_t read_chunk = 16 * 1024;
constexpr std::size_t write_batch = 64 * 1024;
constexpr std::int32_t connection_window = 1 << 20;
// A client's RST_STREAMs: a bucket of 200, refilled at 100 a second (CVE-2023-44487: opening
// and cancelling streams without end). nghttp2's own limiter stays behind it at twice that.
constexpr double reset_burst = 200, reset_rate = 100;
// SETTINGS, PING, WINDOW_UPDATE, PRIORITY and RST_STREAM frames in one second, and DATA frames
// in a row that carry nothing and do not end their stream.
constexpr std::uint32_t control_per_second = 1000, empty_data_in_a_row = 100;

h2_reason reason_of_code(std::uint32_t code) {
  switch (code) {
    case NGHTTP2_PROTOCOL_ERROR:
      return h2_reason::protocol_error;
    case NGHTTP2_COMPRESSION_ERROR:
      return h2_reason::compression_error;
    case NGHTTP2_FLOW_CONTROL_ERROR:
      return h2_reason::flow_control;
    case NGHTTP2_REFUSED_STREAM:
      return h2_reason::refused;
    case NGHTTP2_ENHANCE_YOUR_CALM:
      return h2_reason::control_flood;
    default:
      return h2_reason::other;
  }
}

h2_reason reason_of_error(int rv) {
  switch (rv) {
    case NGHTTP2_ERR_BAD_CLIENT_MAGIC:
      return h2_reason::bad_preface;
    case NGHTTP2_ERR_FLOODED:
    case NGHTTP2_ERR_TOO_MANY_SETTINGS:
      return h2_reason::control_flood;
    case NGHTTP2_ERR_TOO_MANY_CONTINUATIONS:
      return h2_reason::continuation_flood;
    case NGHTTP2_ERR_HEADER_COMP:
      return h2_reason::compression_error;
    case NGHTTP2_ERR_FLOW_CONTROL:
      return h2_reason::flow_control;
    default:
      return h2_reason::protocol_error;
  }
}
}  // namespace

core::core(asio::io_context& io, connection_env& env, handler& h, std::string client_ip,
           bool secure, std::string_view tls_version, std::string client_subject)
    : io_(io),
      env_(env),
      handler_(h),
      client_ip_(std::move(client_ip)),
      client_subject_(std::move(client_subject)),
      tls_version_(tls_version),
      secure_(secure),
      deadline_(io, *env.clock, &core::on_expire, this),
      write_deadline_(io, *env.clock, &core::on_write_expire, this),
      writer_wake_(io, *env.clock),
      reset_tokens_(reset_burst) {
  nghttp2_session_callbacks* cb = nullptr;
  nghttp2_session_callbacks_new(&cb);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cb, &core::on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cb, &core::on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, &core::on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, &core::on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, &core::on_stream_close);
  nghttp2_session_callbacks_set_on_frame_send_callback(cb, &core::on_frame_send);
  nghttp2_option* opt = nullptr;
  nghttp2_option_new(&opt);
  // Window updates follow what the handler takes of a body, not what arrived.
  nghttp2_option_set_no_auto_window_update(opt, 1);
  nghttp2_option_set_no_closed_streams(opt, 1);
  nghttp2_option_set_max_outbound_ack(opt, 100);  // SETTINGS/PING acks the client leaves unread
  nghttp2_option_set_max_settings(opt, 32);
  nghttp2_option_set_stream_reset_rate_limit(opt, 2 * static_cast<std::uint64_t>(reset_burst),
                                             2 * static_cast<std::uint64_t>(reset_rate));
  nghttp2_option_set_max_continuations(opt, 8);
  nghttp2_session_server_new2(&session_, cb, this, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cb);
  const auto& s = env_.settings;
  std::array<nghttp2_settings_entry, 4> iv{{
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, s.max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, s.stream_window},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, static_cast<std::uint32_t>(s.limits.max_head_bytes)},
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
  }};
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, iv.data(), iv.size());
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, connection_window);
  env_.open.fetch_add(1, std::memory_order_relaxed);
  if (env_.metrics) {
    env_.metrics->active_connections().add();
    env_.metrics->h2_connections().inc();
  }
  reset_at_ = control_window_ = env_.clock->now();
  update_deadline();
}

core::~core() {
  live_.clear();
  spare_.clear();
  nghttp2_session_del(session_);
  env_.open.fetch_sub(1, std::memory_order_relaxed);
  if (env_.metrics) env_.metrics->active_connections().sub();
}

// ---- reading --------------------------------------------------------------------------------

bool core::receive(const std::uint8_t* data, std::size_t n) {
  auto rv = nghttp2_session_mem_recv(session_, data, n);
  if (rv < 0) {
    auto why = reason_of_error(static_cast<int>(rv));
    common::log(common::log_level::debug, "http2", "connection from ", client_ip_,
                " ended: ", nghttp2_strerror(static_cast<int>(rv)));
    if (why != h2_reason::bad_preface) {
      std::uint32_t code = why == h2_reason::continuation_flood || why == h2_reason::control_flood
                               ? NGHTTP2_ENHANCE_YOUR_CALM
                               : NGHTTP2_PROTOCOL_ERROR;
      terminate(code, why);
    }
    note_end(why);
    closing_ = true;
    spawn_ready();
    return false;
  }
  spawn_ready();
  wake_writer();
  return true;
}

void core::spawn_ready() {
  // Heads completed in this read are served only now, so a stream opened and reset in the same
  // read (rapid reset) costs no handler and no upstream work.
  auto ready = std::move(ready_);
  ready_.clear();
  for (auto* s : ready) {
    s->queued_ = false;
    if (s->h2_closed_ || s->gone_ || closing_) {
      if (s->h2_closed_) release(s);
      continue;
    }
    s->serving_ = true;
    ++serving_;
    asio::co_spawn(
        io_,
        [](boost::intrusive_ptr<core> self, stream* st) -> asio::awaitable<void> {
          co_await st->serve();
          st->serving_ = false;
          --self->serving_;
          if (st->h2_closed_) self->release(st);
          self->wake_writer();
        }(this, s),
        asio::detached);
  }
}

void core::release(stream* s) {
  if (s->serving_ || s->queued_ || !s->h2_closed_) return;
  auto at = s->slot_;
  std::unique_ptr<stream> gone = std::move(live_[at]);
  if (at + 1 != live_.size()) {
    live_[at] = std::move(live_.back());
    live_[at]->slot_ = at;
  }
  live_.pop_back();
  if (spare_.size() < env_.settings.max_concurrent_streams && !closing_) spare_.push_back(std::move(gone));
  update_deadline();
}

void core::end_all_streams() {
  std::vector<stream*> all;
  for (auto& s : live_) all.push_back(s.get());
  // nghttp2 may still hold a stream (its user data, a DATA source): the stream is marked lost,
  // and freed when nghttp2 closes it or with the session.
  for (auto* s : all) {
    if (!s->h2_closed_) s->lost();
    release(s);
  }
}

// ---- writing --------------------------------------------------------------------------------

bool core::collect(std::string& out) {
  while (out.size() < write_batch) {
    const std::uint8_t* data = nullptr;
    auto n = nghttp2_session_mem_send(session_, &data);
    if (n < 0) {
      common::log(common::log_level::debug, "http2", "send to ", client_ip_,
                  " failed: ", nghttp2_strerror(static_cast<int>(n)));
      return false;
    }
    if (n == 0) break;
    out.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(n));
  }
  return true;
}

void core::wake_writer() {
  if (writer_waiting_) writer_wake_.cancel();
}

asio::awaitable<bool> core::writer_wait() {
  writer_waiting_ = true;
  writer_wake_.expires_at(common::time_point::max());
  co_await writer_wake_.wait();
  writer_waiting_ = false;
  co_return !closed_;
}

bool core::done() const {
  return closing_ || (!nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_));
}

void core::goaway(std::uint32_t code, h2_reason why) {
  if (goaway_sent_) return;
  goaway_sent_ = true;
  end_reason_ = why;
  end_reason_set_ = true;
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(session_), code, nullptr, 0);
  wake_writer();
}

void core::terminate(std::uint32_t code, h2_reason why) {
  if (!end_reason_set_ || !goaway_sent_) {
    end_reason_ = why;
    end_reason_set_ = true;
  }
  goaway_sent_ = true;
  nghttp2_session_terminate_session(session_, code);
  wake_writer();
}

void core::note_end(h2_reason why) {
  if (end_counted_) return;
  end_counted_ = true;
  if (env_.metrics) env_.metrics->h2_goaway(why).inc();
  if (why != h2_reason::drain && why != h2_reason::idle)
    common::log(common::log_level::debug, "http2", "connection from ", client_ip_, " ended: ",
                metrics::to_string(why));
}

// ---- deadlines and the host's controls ---------------------------------------------------------

void core::update_deadline() {
  if (closing_) return;
  auto now = env_.clock->now();
  if (headers_pending_)
    deadline_.set(now + env_.settings.header_timeout);
  else if (live_.empty())
    deadline_.set(now + env_.settings.idle_timeout);
  else
    deadline_.clear();
}

void core::on_expire(void* self) {
  auto& c = *static_cast<core*>(self);
  if (c.closed_) {
    c.shutdown_socket(true);  // the linger after the last frames is over
    return;
  }
  if (c.closing_) return;
  c.terminate(NGHTTP2_NO_ERROR,
              c.headers_pending_ ? h2_reason::header_timeout : h2_reason::idle);
}

void core::on_write_expire(void* self) {
  auto& c = *static_cast<core*>(self);
  c.note_end(h2_reason::write_stall);
  c.shutdown_socket(true);
}

void core::close_if_idle() {
  // Drain: GOAWAY now; the streams already open finish, then the connection closes.
  goaway(NGHTTP2_NO_ERROR, h2_reason::drain);
}

void core::abort() {
  closing_ = true;
  shutdown_socket(true);
  end_all_streams();
  wake_writer();
}

bool core::count_control_frame() {
  auto now = env_.clock->now();
  if (now - control_window_ >= std::chrono::seconds(1)) {
    control_window_ = now;
    control_frames_ = 0;
  }
  return ++control_frames_ <= control_per_second;
}

// ---- nghttp2's callbacks ------------------------------------------------------------------------

int core::on_begin_headers(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
  auto& c = *static_cast<core*>(user);
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  c.headers_pending_ = true;
  c.update_deadline();
  if (frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;  // trailers of an open stream
  auto id = frame->hd.stream_id;
  // Streams being served, reset ones included, stay within max_concurrent_streams: a client
  // resetting its streams cannot pile up handlers and upstream requests behind them.
  if (c.serving_ + c.ready_.size() >= c.env_.settings.max_concurrent_streams || c.closing_) {
    nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, id, NGHTTP2_REFUSED_STREAM);
    return 0;
  }
  std::unique_ptr<stream> s;
  if (c.spare_.empty()) {
    s = std::make_unique<stream>(c, id);
  } else {
    s = std::move(c.spare_.back());
    c.spare_.pop_back();
    s->reuse(id);
  }
  nghttp2_session_set_stream_user_data(session, id, s.get());
  s->slot_ = c.live_.size();
  c.live_.push_back(std::move(s));
  if (c.env_.metrics) c.env_.metrics->h2_streams().inc();
  return 0;
}

int core::on_header(nghttp2_session* session, const nghttp2_frame* frame, const std::uint8_t* name,
                    std::size_t namelen, const std::uint8_t* value, std::size_t valuelen,
                    std::uint8_t, void* user) {
  auto& c = *static_cast<core*>(user);
  auto* s = static_cast<stream*>(nghttp2_session_get_stream_user_data(session, frame->hd.stream_id));
  if (!s) return 0;
  bool ok = s->add_field({reinterpret_cast<const char*>(name), namelen},
                         {reinterpret_cast<const char*>(value), valuelen},
                         frame->headers.cat != NGHTTP2_HCAT_REQUEST);
  if (!ok) {
    // Far past the limit: an HPACK bomb. The connection ends.
    c.terminate(NGHTTP2_ENHANCE_YOUR_CALM, h2_reason::header_list_too_large);
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  }
  return 0;
}

int core::on_frame_recv(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
  auto& c = *static_cast<core*>(user);
  auto type = frame->hd.type;
  bool end_stream = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
  switch (type) {
    case NGHTTP2_SETTINGS:
    case NGHTTP2_PING:
      if (frame->hd.flags & NGHTTP2_FLAG_ACK) break;
      [[fallthrough]];
    case NGHTTP2_WINDOW_UPDATE:
    case NGHTTP2_PRIORITY:
      if (!c.count_control_frame()) c.terminate(NGHTTP2_ENHANCE_YOUR_CALM, h2_reason::control_flood);
      break;
    case NGHTTP2_RST_STREAM: {
      if (c.env_.metrics) c.env_.metrics->h2_client_resets().inc();
      auto now = c.env_.clock->now();
      c.reset_tokens_ = std::min(
          reset_burst, c.reset_tokens_ + reset_rate * common::seconds_between(c.reset_at_, now));
      c.reset_at_ = now;
      c.reset_tokens_ -= 1;
      if (c.reset_tokens_ < 0) c.terminate(NGHTTP2_ENHANCE_YOUR_CALM, h2_reason::rapid_reset);
      if (!c.count_control_frame()) c.terminate(NGHTTP2_ENHANCE_YOUR_CALM, h2_reason::control_flood);
      break;
    }
    case NGHTTP2_DATA: {
      if (frame->hd.length == 0 && !end_stream) {
        if (++c.empty_data_ > empty_data_in_a_row)
          c.terminate(NGHTTP2_ENHANCE_YOUR_CALM, h2_reason::control_flood);
      } else {
        c.empty_data_ = 0;
      }
      auto* s =
          static_cast<stream*>(nghttp2_session_get_stream_user_data(session, frame->hd.stream_id));
      if (s && end_stream) s->end_body();
      break;
    }
    case NGHTTP2_HEADERS: {
      c.headers_pending_ = false;
      c.update_deadline();
      auto* s =
          static_cast<stream*>(nghttp2_session_get_stream_user_data(session, frame->hd.stream_id));
      if (!s) break;
      if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
        s->finish_head(end_stream);
        s->queued_ = true;
        c.ready_.push_back(s);
      } else if (end_stream) {
        s->end_body();  // trailers end the body (their fields are not forwarded)
      }
      break;
    }
    default:
      break;
  }
  return 0;
}

int core::on_data_chunk(nghttp2_session* session, std::uint8_t, std::int32_t id,
                        const std::uint8_t* data, std::size_t len, void*) {
  nghttp2_session_consume_connection(session, len);
  auto* s = static_cast<stream*>(nghttp2_session_get_stream_user_data(session, id));
  if (!s) {
    nghttp2_session_consume_stream(session, id, len);
    return 0;
  }
  s->add_data(data, len);
  return 0;
}

int core::on_stream_close(nghttp2_session* session, std::int32_t id, std::uint32_t code,
                          void* user) {
  auto& c = *static_cast<core*>(user);
  auto* s = static_cast<stream*>(nghttp2_session_get_stream_user_data(session, id));
  if (!s) return 0;
  s->closed(code);
  c.release(s);
  return 0;
}

int core::on_frame_send(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
  auto& c = *static_cast<core*>(user);
  switch (frame->hd.type) {
    case NGHTTP2_GOAWAY:
      c.note_end(c.end_reason_set_ ? c.end_reason_ : reason_of_code(frame->goaway.error_code));
      break;
    case NGHTTP2_RST_STREAM: {
      auto code = frame->rst_stream.error_code;
      if (code == NGHTTP2_NO_ERROR) break;  // a response complete before its request body
      auto* s =
          static_cast<stream*>(nghttp2_session_get_stream_user_data(session, frame->hd.stream_id));
      auto why = s && s->has_reason_ ? s->reset_reason_ : reason_of_code(code);
      if (c.env_.metrics) c.env_.metrics->h2_reset(why).inc();
      break;
    }
    case NGHTTP2_DATA:
    case NGHTTP2_HEADERS: {
      if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) break;
      auto* s =
          static_cast<stream*>(nghttp2_session_get_stream_user_data(session, frame->hd.stream_id));
      // The response is complete and the client is still sending a body nobody reads: the
      // stream ends here (RFC 9113 8.1).
      if (s && !s->end_stream_)
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_NO_ERROR);
      break;
    }
    default:
      break;
  }
  return 0;
}

ssize_t core::read_data(nghttp2_session*, std::int32_t, std::uint8_t* buf, std::size_t length,
                        std::uint32_t* flags, nghttp2_data_source* source, void*) {
  return static_cast<stream*>(source->ptr)->read_out(buf, length, flags);
}

// ---- the connection over its byte stream ------------------------------------------------------

namespace {
template <class S>
class conn final : public core {
 public:
  conn(asio::io_context& io, S s, connection_env& env, handler& h, std::string ip,
       std::string_view version, std::string subject)
      : core(io, env, h, std::move(ip), !std::is_same_v<S, tcp::socket>, version,
             std::move(subject)),
        s_(std::move(s)) {
    error_code ec;
    lowest_layer_of(s_).set_option(tcp::no_delay(true), ec);
  }

  asio::awaitable<void> reader() {
    std::vector<std::uint8_t> buf(read_chunk);
    while (true) {
      auto [ec, n] = co_await byte_stream::read_some(s_, asio::buffer(buf.data(), buf.size()));
      if (ec || n == 0) break;
      // Once the connection ends, what the client still sends is read and dropped while the
      // writer's last frames (GOAWAY) go out: closing with unread bytes would reset the
      // connection and could lose them (the linger ends at its own deadline).
      if (closing_) continue;
      if (!receive(buf.data(), n) || done()) {
        closing_ = true;
        wake_writer();
      }
    }
    reader_done_ = closing_ = true;
    end_all_streams();  // a stream still open has lost its client
    wake_writer();
  }

  asio::awaitable<void> writer() {
    std::string out;
    while (true) {
      out.clear();
      bool ok = collect(out);
      if (!out.empty()) {
        write_deadline_.set(env_.clock->now() + env_.settings.idle_timeout);
        std::array<asio::const_buffer, 1> b{asio::buffer(out)};
        auto [ec, n] = co_await byte_stream::write_all(s_, b);
        write_deadline_.clear();
        if (ec) break;
        continue;
      }
      if (!ok || done()) break;
      if (!co_await writer_wait()) break;
    }
    closed_ = closing_ = true;
    if (!end_counted_ && goaway_sent_) note_end(end_reason_);
    end_all_streams();
    byte_stream::say_goodbye(s_);
    // The reader's pending read ends (at once, or after a short linger); the socket closes with
    // the last reference.
    if (reader_done_) {
      shutdown_socket(true);
    } else {
      shutdown_socket(false);
      deadline_.set(env_.clock->now() + std::chrono::seconds(1));
    }
    if (is_linked()) unlink();
  }

 private:
  static asio::ip::tcp::socket& lowest_layer_of(tcp::socket& s) { return s; }
  static asio::ip::tcp::socket& lowest_layer_of(tls::stream& s) { return s.socket(); }
  void shutdown_socket(bool both) override {
    error_code ignored;
    lowest_layer_of(s_).shutdown(both ? tcp::socket::shutdown_both : tcp::socket::shutdown_send,
                                 ignored);
  }
  S s_;
};

std::string peer_ip(tcp::socket& s) {
  error_code ec;
  auto peer = s.remote_endpoint(ec);
  return ec ? "unknown" : peer.address().to_string();
}

// The reader and the writer each hold the connection; it goes with the last of them and of its
// streams' handlers.
template <class S>
void launch(asio::io_context& io, conn<S>* c, connection_host* tracked_by) {
  boost::intrusive_ptr<core> keep(c);
  if (tracked_by) tracked_by->track(*c);
  asio::co_spawn(
      io,
      [](boost::intrusive_ptr<core>, conn<S>* self) -> asio::awaitable<void> {
        co_await self->writer();
      }(keep, c),
      asio::detached);
  asio::co_spawn(
      io,
      [](boost::intrusive_ptr<core>, conn<S>* self) -> asio::awaitable<void> {
        co_await self->reader();
      }(keep, c),
      asio::detached);
}
}  // namespace

void start(asio::io_context& io, tcp::socket socket, connection_env& env, handler& h,
           connection_host* tracked_by) {
  auto ip = peer_ip(socket);
  launch(io, new conn<tcp::socket>(io, std::move(socket), env, h, std::move(ip), {}, {}),
         tracked_by);
}

void start(asio::io_context& io, tls::stream stream, connection_env& env, handler& h,
           connection_host* tracked_by) {
  auto ip = peer_ip(stream.socket());
  auto version = stream.version();
  auto subject = stream.client_subject();
  launch(io,
         new conn<tls::stream>(io, std::move(stream), env, h, std::move(ip), version,
                               std::move(subject)),
         tracked_by);
}

}  // namespace meridian::http::h2
