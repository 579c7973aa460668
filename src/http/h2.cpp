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
