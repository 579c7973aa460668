#include "meridian/upstream/h2_channel.hpp"

#include <nghttp2/nghttp2.h>

#include <array>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <cstring>
#include <unordered_map>

#include "meridian/common/log.hpp"
#include "meridian/runtime/timer.hpp"
#include "meridian/runtime/watchdog.hpp"

namespace meridian::upstream {

namespace asio = boost::asio;

namespace {
constexpr std::uint32_t stream_window = 1 << 20;
constexpr std::int32_t connection_window = 4 << 20;
constexpr std::size_t write_batch = 64 * 1024;
// A backend that takes no byte of a write for this long (its process stalled, the path gone) loses
// the connection: its calls fail now rather than at their own deadlines, and new calls go to a new
// connection. HTTP/2 flow control holds DATA back on its own, so a slow reader never gets here.
constexpr auto write_stall = std::chrono::seconds(10);
}  // namespace

struct h2_call_state {
  h2_call_state(asio::io_context& io, const common::clock& c) : wake(io, c) {}
  std::int32_t id = 0;
  int status = 0;
  h2_fields fields, trailers;
  std::string in, out;
  std::size_t out_begin = 0;
  bool last = false;          // the request's DATA is all queued
  bool headers_done = false;  // the response head arrived
  bool ended = false;         // the response ended (END_STREAM)
  bool failed = false;
  bool refused = false;    // REFUSED_STREAM (or past a GOAWAY): the backend never processed it
  bool closed = false;     // nghttp2 closed the stream
  bool abandoned = false;  // its h2_call is gone
  std::string error;
  runtime::timer wake;
  bool waiting = false;
  void notify() {
    if (waiting) wake.cancel();
  }
  asio::awaitable<bool> wait_until(common::time_point deadline) {
    waiting = true;
    wake.expires_at(deadline);
    auto ec = co_await wake.wait();
    waiting = false;
    co_return ec == asio::error::operation_aborted;
  }
};

struct h2_channel::impl {
  impl(asio::io_context& io_, const common::clock& c, link l)
      : io(io_), clock(c), conn(std::move(l)), writer_wake(io_, c) {}
  ~impl() {
    if (session) nghttp2_session_del(session);
  }
  asio::io_context& io;
  const common::clock& clock;
  link conn;
  nghttp2_session* session = nullptr;
  std::unordered_map<std::int32_t, std::unique_ptr<h2_call_state>> calls;
  runtime::timer writer_wake;
  bool writer_waiting = false;
  bool closed = false;
  bool goaway = false;

  void wake_writer() {
    if (writer_waiting) writer_wake.cancel();
  }
  void fail_all(std::string_view why) {
    for (auto& [id, c] : calls) {
      if (c->ended || c->failed) continue;
      c->failed = true;
      c->error.assign(why);
      c->notify();
    }
  }
  void forget(h2_call_state* c) {
    if (session) nghttp2_session_set_stream_user_data(session, c->id, nullptr);
    calls.erase(c->id);
    if (retiring && calls.empty()) close_now();
  }
  bool retiring = false;  // no new calls: closes when its last call is done
  void close_now() {
    if (closed) return;
    closed = true;
    conn.shutdown();
    fail_all("the connection to the backend was closed");
    wake_writer();
  }

  static int on_header(nghttp2_session* s, const nghttp2_frame* f, const std::uint8_t* name,
                       std::size_t namelen, const std::uint8_t* value, std::size_t valuelen,
                       std::uint8_t, void*) {
    auto* c = static_cast<h2_call_state*>(nghttp2_session_get_stream_user_data(s, f->hd.stream_id));
    if (!c) return 0;
    std::string_view n(reinterpret_cast<const char*>(name), namelen);
    std::string_view v(reinterpret_cast<const char*>(value), valuelen);
    if (f->headers.cat == NGHTTP2_HCAT_RESPONSE) {
      if (n == ":status") {
        int st = 0;
        for (char ch : v) st = st * 10 + (ch - '0');
        c->status = st;
      } else {
        c->fields.emplace_back(n, v);
      }
    } else {
      c->trailers.emplace_back(n, v);
    }
    return 0;
  }
  static int on_frame_recv(nghttp2_session* s, const nghttp2_frame* f, void* user) {
    auto& self = *static_cast<impl*>(user);
    if (f->hd.type == NGHTTP2_GOAWAY) {
      self.goaway = true;
      return 0;
    }
    auto* c = static_cast<h2_call_state*>(nghttp2_session_get_stream_user_data(s, f->hd.stream_id));
    if (!c) return 0;
    if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_RESPONSE)
      c->headers_done = c->status >= 200;
    if ((f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) &&
        (f->hd.flags & NGHTTP2_FLAG_END_STREAM))
      c->ended = true;
    c->notify();
    return 0;
  }
  static int on_data(nghttp2_session* s, std::uint8_t, std::int32_t id, const std::uint8_t* data,
                     std::size_t len, void*) {
    auto* c = static_cast<h2_call_state*>(nghttp2_session_get_stream_user_data(s, id));
    if (!c || c->abandoned) {
      nghttp2_session_consume(s, id, len);
      return 0;
    }
    c->in.append(reinterpret_cast<const char*>(data), len);
    c->notify();
    return 0;
  }
  static int on_close(nghttp2_session* s, std::int32_t id, std::uint32_t code, void* user) {
    auto& self = *static_cast<impl*>(user);
    auto* c = static_cast<h2_call_state*>(nghttp2_session_get_stream_user_data(s, id));
    if (!c) return 0;
    c->closed = true;
    if (!c->ended && !c->failed) {
      c->failed = true;
      c->refused = code == NGHTTP2_REFUSED_STREAM;
      c->error = code == NGHTTP2_REFUSED_STREAM
                     ? std::string("refused by the backend (REFUSED_STREAM)")
                     : common::cat("reset by the backend (", nghttp2_http2_strerror(code), ")");
    }
    c->notify();
    if (c->abandoned) self.forget(c);
    return 0;
  }
  static ssize_t read_body(nghttp2_session*, std::int32_t, std::uint8_t* buf, std::size_t length,
                           std::uint32_t* flags, nghttp2_data_source* src, void*) {
    auto* c = static_cast<h2_call_state*>(src->ptr);
    std::size_t n = std::min(length, c->out.size() - c->out_begin);
    std::memcpy(buf, c->out.data() + c->out_begin, n);
    c->out_begin += n;
    if (c->out_begin == c->out.size()) {
      c->out.clear();
      c->out_begin = 0;
      if (c->last) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        return static_cast<ssize_t>(n);
      }
      if (n == 0) return NGHTTP2_ERR_DEFERRED;
    }
    return static_cast<ssize_t>(n);
  }

  asio::awaitable<void> reader(std::shared_ptr<h2_channel> keep) {
    std::vector<char> buf(16 * 1024);
    while (!closed) {
      auto [ec, n] = co_await conn.read_some(asio::buffer(buf));
      if (ec || n == 0 || closed) break;
      auto rv =
          nghttp2_session_mem_recv(session, reinterpret_cast<const std::uint8_t*>(buf.data()), n);
      if (rv < 0) break;
      wake_writer();
    }
    closed = true;
    fail_all("the connection to the backend was lost");
    wake_writer();
  }

  asio::awaitable<void> writer(std::shared_ptr<h2_channel> keep) {
    std::string out;
    runtime::watchdog dog(
        io, clock, [](void* l) { static_cast<link*>(l)->shutdown(); }, &conn);
    while (!closed) {
      out.clear();
      while (out.size() < write_batch) {
        const std::uint8_t* d = nullptr;
        auto n = nghttp2_session_mem_send(session, &d);
        if (n <= 0) break;
        out.append(reinterpret_cast<const char*>(d), static_cast<std::size_t>(n));
      }
      if (!out.empty()) {
        std::array<asio::const_buffer, 1> b{asio::buffer(out)};
        dog.set(clock.now() + write_stall);
        auto [ec, n] = co_await conn.write(b);
        dog.clear();
        if (ec || dog.expired()) {
          if (dog.expired())
            common::log(common::log_level::warn, "upstream",
                        "HTTP/2 connection to a gRPC backend closed: a write stalled for 10 s");
          break;
        }
        continue;
      }
      writer_waiting = true;
      writer_wake.expires_at(common::time_point::max());
      co_await writer_wake.wait();
      writer_waiting = false;
    }
    closed = true;
    conn.shutdown();  // the reader's pending read ends
    fail_all("the connection to the backend was lost");
  }
};

h2_channel::h2_channel(std::unique_ptr<impl> p) : p_(std::move(p)) {}
h2_channel::~h2_channel() = default;

asio::awaitable<std::shared_ptr<h2_channel>> h2_channel::open(
    asio::io_context& io, const common::clock& clock, const resolved_address& to,
    const tls_target& tls, common::time_point deadline, std::string& why) {
  auto l = link::make(io.get_executor());
  runtime::watchdog dog(
      io, clock, [](void* conn) { static_cast<link*>(conn)->shutdown(); }, &l);
  dog.set(deadline);
  auto [ec] = co_await l.connect(to);
  bool late = dog.expired();
  dog.clear();
  if (ec || late) {
    why = late ? "connect timed out" : ec.message();
    l.close();
    co_return nullptr;
  }
  l.set_no_delay();
  if (tls) {
    dog.set(deadline);
    auto hs = co_await l.handshake(tls);
    late = dog.expired();
    dog.clear();
    if (!hs.ok || late || l.alpn() != "h2") {
      if (late)
        why = "TLS handshake timed out";
      else if (!hs.ok)
        why = common::cat("TLS handshake failed: ", hs.reason, hs.detail.empty() ? "" : ": ",
                          hs.detail);
      else
        why = "the backend did not agree to h2 by ALPN";
      l.close();
      co_return nullptr;
    }
  }
  auto p = std::make_unique<impl>(io, clock, std::move(l));
  nghttp2_session_callbacks* cb = nullptr;
  nghttp2_session_callbacks_new(&cb);
  nghttp2_session_callbacks_set_on_header_callback(cb, &impl::on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, &impl::on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, &impl::on_data);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, &impl::on_close);
  nghttp2_option* opt = nullptr;
  nghttp2_option_new(&opt);
  nghttp2_option_set_no_auto_window_update(opt, 1);
  nghttp2_session_client_new2(&p->session, cb, p.get(), opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cb);
  std::array<nghttp2_settings_entry, 2> iv{
      {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0}, {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, stream_window}}};
  nghttp2_submit_settings(p->session, NGHTTP2_FLAG_NONE, iv.data(), iv.size());
  nghttp2_session_set_local_window_size(p->session, NGHTTP2_FLAG_NONE, 0, connection_window);
  auto ch = std::make_shared<h2_channel>(std::move(p));
  auto& im = *ch->p_;
  asio::co_spawn(io, im.writer(ch), asio::detached);
  asio::co_spawn(io, im.reader(ch), asio::detached);
  co_return ch;
}

bool h2_channel::usable() const {
  if (p_->closed || p_->goaway || p_->retiring) return false;
  auto max =
      nghttp2_session_get_remote_settings(p_->session, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
  return p_->calls.size() < max;
}

std::size_t h2_channel::calls() const {
  return p_->calls.size();
}

void h2_channel::close() {
  p_->close_now();
}

void h2_channel::retire() {
  p_->retiring = true;
  if (p_->calls.empty()) p_->close_now();
}

h2_call h2_channel::start(const h2_fields& head) {
  h2_call call;
  if (p_->closed) return call;
  std::vector<nghttp2_nv> nva;
  nva.reserve(head.size());
  for (const auto& [n, v] : head)
    nva.push_back({reinterpret_cast<std::uint8_t*>(const_cast<char*>(n.data())),
                   reinterpret_cast<std::uint8_t*>(const_cast<char*>(v.data())), n.size(), v.size(),
                   NGHTTP2_NV_FLAG_NONE});
  auto st = std::make_unique<h2_call_state>(p_->io, p_->clock);
  nghttp2_data_provider body{};
  body.source.ptr = st.get();
  body.read_callback = &impl::read_body;
  auto id = nghttp2_submit_request(p_->session, nullptr, nva.data(), nva.size(), &body, st.get());
  if (id < 0) {
    common::log(common::log_level::warn, "upstream",
                "HTTP/2 request not submitted: ", nghttp2_strerror(id));
    return call;
  }
  st->id = id;
  call.state_ = st.get();
  call.channel_ = shared_from_this();
  p_->calls.emplace(id, std::move(st));
  p_->wake_writer();
  return call;
}

// ---- h2_call ----------------------------------------------------------------------------------

h2_call::h2_call(h2_call&& o) noexcept : channel_(std::move(o.channel_)), state_(o.state_) {
  o.state_ = nullptr;
}

h2_call& h2_call::operator=(h2_call&& o) noexcept {
  if (this != &o) {
    this->~h2_call();
    new (this) h2_call(std::move(o));
  }
  return *this;
}

h2_call::~h2_call() {
  if (!state_) return;
  auto& im = *channel_->p_;
  state_->abandoned = true;
  if (state_->closed || im.closed) {
    im.forget(state_);
  } else if (!state_->ended || !state_->last) {
    nghttp2_submit_rst_stream(im.session, NGHTTP2_FLAG_NONE, state_->id, NGHTTP2_CANCEL);
    im.wake_writer();
  }
  state_ = nullptr;
}

void h2_call::cancel() {
  if (!state_ || state_->closed) return;
  auto& im = *channel_->p_;
  nghttp2_submit_rst_stream(im.session, NGHTTP2_FLAG_NONE, state_->id, NGHTTP2_CANCEL);
  state_->failed = true;
  state_->error = "cancelled";
  state_->notify();  // a wait on it ends now
  im.wake_writer();
}

bool h2_call::write(std::string_view data, bool last) {
  if (!state_ || state_->failed) return false;
  state_->out.append(data);
  if (last) state_->last = true;
  auto& im = *channel_->p_;
  nghttp2_session_resume_data(im.session, state_->id);
  im.wake_writer();
  return true;
}

asio::awaitable<bool> h2_call::headers(common::time_point deadline) {
  bool ok = false;
  while (state_) {
    if (state_->headers_done) {
      ok = true;
      break;
    }
    if (state_->failed || state_->ended) break;
    bool woke = co_await state_->wait_until(deadline);
    if (!woke) {
      state_->error = "timed out waiting for the response head";
      break;
    }
  }
  co_return ok;
}

int h2_call::status() const {
  return state_ ? state_->status : 0;
}
bool h2_call::refused() const {
  return state_ && state_->refused;
}
const h2_fields& h2_call::response_fields() const {
  return state_->fields;
}
const h2_fields& h2_call::trailers() const {
  return state_->trailers;
}
std::string_view h2_call::error() const {
  return state_ ? std::string_view(state_->error) : std::string_view("no call");
}

asio::awaitable<h2_call::got> h2_call::read(std::string& out, common::time_point deadline) {
  if (!state_) co_return got::failed;
  while (true) {
    if (!state_->in.empty()) {
      auto n = state_->in.size();
      out.append(state_->in);
      state_->in.clear();
      auto& im = *channel_->p_;
      if (!im.closed) {
        nghttp2_session_consume(im.session, state_->id, n);
        im.wake_writer();
      }
      co_return got::data;
    }
    if (state_->ended) co_return got::end;
    if (state_->failed) co_return got::failed;
    if (!co_await state_->wait_until(deadline)) co_return got::timeout;
  }
}

}  // namespace meridian::upstream
