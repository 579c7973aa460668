#include "load/h2_client.hpp"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <string>
#include <vector>

#include "load/exchange.hpp"

namespace meridian::loadtest::runner {

namespace {

// One stream's state; lives in its slot's coroutine frame while the stream is open. The session
// reaches it as the stream's user data until the slot leaves (timeout: the pointer is cleared).
struct h2_stream {
  outcome* o = nullptr;
  asio::steady_timer* wake = nullptr;
  std::string_view body;  // the request body still to send
  bool closed = false;
  bool is_sse = false;
  bool grpc = false;
  int grpc_status = -1;
  token_progress tokens;
  sse_parser sse;
  std::string content;      // a plain OpenAI body (for its usage), or gRPC bytes not yet framed
  std::uint32_t messages = 0;  // complete gRPC messages
  std::uint64_t read_gen = 0;
  std::uint32_t events_this_read = 0;
};

bool iequal(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

// HTTP/1.1 request bytes (what the request builder makes) as h2 fields: the request line becomes
// pseudo-headers, Host :authority, names lowercase, connection-specific fields dropped.
struct h2_request_fields {
  std::vector<std::string> names, values;
  std::string_view body;
  bool parse(std::string_view req, bool tls) {
    auto head_end = req.find("\r\n\r\n");
    if (head_end == std::string_view::npos) return false;
    body = req.substr(head_end + 4);
    std::string_view head = req.substr(0, head_end);
    auto eol = head.find("\r\n");
    std::string_view line = head.substr(0, eol);
    auto sp1 = line.find(' '), sp2 = line.rfind(' ');
    if (sp1 == std::string_view::npos || sp2 <= sp1) return false;
    add(":method", line.substr(0, sp1));
    add(":scheme", tls ? "https" : "http");
    add(":path", line.substr(sp1 + 1, sp2 - sp1 - 1));
    head = eol == std::string_view::npos ? std::string_view{} : head.substr(eol + 2);
    while (!head.empty()) {
      eol = head.find("\r\n");
      line = head.substr(0, eol);
      head = eol == std::string_view::npos ? std::string_view{} : head.substr(eol + 2);
      auto colon = line.find(':');
      if (colon == std::string_view::npos) return false;
      std::string name(line.substr(0, colon));
      for (auto& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      std::string_view value = line.substr(colon + 1);
      while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
        value.remove_prefix(1);
      if (name == "host") {
        names.insert(names.begin() + 3, ":authority");
        values.insert(values.begin() + 3, std::string(value));
      } else if (name != "connection" && name != "keep-alive" && name != "transfer-encoding" &&
                 name != "upgrade" && name != "proxy-connection") {
        add(name, value);
      }
    }
    return true;
  }
  void add(std::string_view n, std::string_view v) {
    names.emplace_back(n);
    values.emplace_back(v);
  }
  std::vector<nghttp2_nv> nva() {
    std::vector<nghttp2_nv> v(names.size());
    for (std::size_t i = 0; i < names.size(); ++i)
      v[i] = {reinterpret_cast<std::uint8_t*>(names[i].data()),
              reinterpret_cast<std::uint8_t*>(values[i].data()), names[i].size(), values[i].size(),
              NGHTTP2_NV_FLAG_NONE};
    return v;
  }
};

}  // namespace

// One TCP (or TLS) connection and its nghttp2 client session, kept alive by its reader and writer
// coroutines and by the h2_session that hands it to slots.
struct h2_link : std::enable_shared_from_this<h2_link> {
  h2_link(worker* w) : w(w), ts(std::make_shared<timed_socket>(w->ctx.get_executor())),
                       write_wake(w->ctx) {}
  ~h2_link() {
    if (ng) nghttp2_session_del(ng);
  }
  worker* w;
  std::shared_ptr<timed_socket> ts;
  std::unique_ptr<asio::ssl::stream<tcp::socket&>> tls;
  nghttp2_session* ng = nullptr;
  asio::steady_timer write_wake;
  bool dead = false;
  std::uint64_t read_gen = 0;
  steady::time_point read_at{};
  std::vector<h2_stream*> live;

  void signal() { write_wake.cancel(); }
  // Ends the connection: every stream still open ends with a transport error.
  void fail() {
    if (dead) return;
    dead = true;
    ts->stop();
    error_code ec;
    ts->sock.close(ec);
    const auto now = steady::now();
    for (auto* st : live) {
      if (st->closed) continue;
      st->closed = true;
      if (st->o->error == error_kind::none) st->o->error = error_kind::transport;
      st->o->done = now;
      st->wake->cancel();
    }
    signal();
  }
  bool start_session();
  asio::awaitable<void> reader();
  asio::awaitable<void> writer();
};

namespace {

h2_stream* stream_of(nghttp2_session* s, std::int32_t id) {
  return static_cast<h2_stream*>(nghttp2_session_get_stream_user_data(s, id));
}

// Complete gRPC messages (5-byte prefix, then the message) at the front of st.content; each one
// of a ModelStreamInfer answer is a token event.
void take_grpc_messages(worker* w, h2_stream& st, steady::time_point now) {
  std::size_t off = 0;
  while (st.content.size() - off >= 5) {
    const auto* p = reinterpret_cast<const unsigned char*>(st.content.data() + off);
    const std::size_t len = (std::size_t{p[1]} << 24) | (std::size_t{p[2]} << 16) |
                            (std::size_t{p[3]} << 8) | std::size_t{p[4]};
    if (st.content.size() - off - 5 < len) break;
    off += 5 + len;
    ++st.messages;
    if (!w->cfg.stream) continue;
    ++w->token_events;
    ++st.o->tokens;
    if (st.o->first_token == steady::time_point{})
      st.o->first_token = now;
    else
      w->itl.record(to_ns(now - st.tokens.last_token));
    st.tokens.last_token = now;
    if (++st.events_this_read > 1) ++st.o->clumped;
  }
  st.content.erase(0, off);
}

int on_header(nghttp2_session* s, const nghttp2_frame* f, const std::uint8_t* name,
              std::size_t namelen, const std::uint8_t* value, std::size_t valuelen, std::uint8_t,
              void* user) {
  if (f->hd.type != NGHTTP2_HEADERS) return 0;
  auto* st = stream_of(s, f->hd.stream_id);
  if (!st) return 0;
  auto* l = static_cast<h2_link*>(user);
  std::string_view n(reinterpret_cast<const char*>(name), namelen);
  std::string_view v(reinterpret_cast<const char*>(value), valuelen);
  if (n == ":status") {
    int code = 0;
    std::from_chars(v.data(), v.data() + v.size(), code);
    if (code >= 200) st->o->status = code;  // 1xx heads are interim
  } else if (n == "content-type") {
    st->is_sse = v.starts_with("text/event-stream");
    st->grpc = v.starts_with("application/grpc");
  } else if (n == "grpc-status") {
    st->grpc_status = 0;
    std::from_chars(v.data(), v.data() + v.size(), st->grpc_status);
  } else if (iequal(n, l->w->cfg.backend_header)) {
    st->o->backend = l->w->backend_index(v);
  }
  return 0;
}

int on_data(nghttp2_session* s, std::uint8_t, std::int32_t id, const std::uint8_t* data,
            std::size_t len, void* user) {
  auto* st = stream_of(s, id);
  if (!st) return 0;
  auto* l = static_cast<h2_link*>(user);
  worker* w = l->w;
  if (st->read_gen != l->read_gen) {
    st->read_gen = l->read_gen;
    st->events_this_read = 0;
  }
  std::string_view d(reinterpret_cast<const char*>(data), len);
  if (w->cfg.api == openai_api::kserve) {
    st->content.append(d);
    take_grpc_messages(w, *st, l->read_at);
  } else if (w->cfg.api != openai_api::none && st->is_sse) {
    st->sse.feed(d, [&](std::string_view ev) {
      on_openai_event(w, *st->o, st->tokens, ev, l->read_at, st->events_this_read);
    });
  } else if (w->cfg.api != openai_api::none && st->content.size() < (16u << 20)) {
    st->content.append(d);
  }
  return 0;
}

int on_close(nghttp2_session* s, std::int32_t id, std::uint32_t code, void* user) {
  auto* st = stream_of(s, id);
  if (!st) return 0;
  auto* l = static_cast<h2_link*>(user);
  st->closed = true;
  if (code != NGHTTP2_NO_ERROR && st->o->error == error_kind::none)
    st->o->error = error_kind::transport;
  st->o->done = l->read_at == steady::time_point{} ? steady::now() : l->read_at;
  st->wake->cancel();
  return 0;
}

ssize_t read_body(nghttp2_session*, std::int32_t, std::uint8_t* buf, std::size_t len,
                  std::uint32_t* flags, nghttp2_data_source* src, void*) {
  auto* st = static_cast<h2_stream*>(src->ptr);
  const std::size_t n = std::min(len, st->body.size());
  std::copy_n(st->body.data(), n, buf);
  st->body.remove_prefix(n);
  if (st->body.empty()) *flags |= NGHTTP2_DATA_FLAG_EOF;
  return static_cast<ssize_t>(n);
}

// Classifies a stream that ended: HTTP status, a gRPC status, an OpenAI body or stream.
void finish_stream(worker* w, h2_stream& st) {
  outcome& o = *st.o;
  if (o.error != error_kind::none) return;
  const bool openai = w->cfg.api != openai_api::none && w->cfg.api != openai_api::kserve;
  if (o.status >= 400 || o.status < 200) {
    o.error = error_kind::http_status;
  } else if (w->cfg.api == openai_api::kserve) {
    if (st.grpc_status != 0) o.error = error_kind::grpc_status;  // absent counts as failed too
    else if (st.messages == 0 || !st.content.empty()) o.error = error_kind::bad_response;
    if (!w->cfg.stream) o.first_token = o.done;
  } else if (openai && !st.is_sse) {
    auto info = inspect_openai_body(st.content);
    if (info.is_error) o.error = error_kind::bad_response;
    if (info.completion_tokens >= 0) o.tokens = static_cast<std::uint32_t>(info.completion_tokens);
    o.first_token = o.done;
  } else if (openai && !st.tokens.saw_done) {
    o.error = error_kind::bad_response;  // stream ended without [DONE]
  }
}

}  // namespace

bool h2_link::start_session() {
  nghttp2_session_callbacks* cb = nullptr;
  if (nghttp2_session_callbacks_new(&cb) != 0) return false;
  nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_close);
  const int rv = nghttp2_session_client_new(&ng, cb, this);
  nghttp2_session_callbacks_del(cb);
  if (rv != 0) return false;
  // Windows sized for streaming: a reader that keeps up never stalls a stream on flow control.
  const std::array<nghttp2_settings_entry, 2> iv{{{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
                                                  {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 24}}};
  nghttp2_submit_settings(ng, NGHTTP2_FLAG_NONE, iv.data(), iv.size());
  nghttp2_session_set_local_window_size(ng, NGHTTP2_FLAG_NONE, 0, 1 << 26);
  return true;
}

asio::awaitable<void> h2_link::reader() {
  auto self = shared_from_this();
  std::vector<std::uint8_t> buf(64 * 1024);
  while (!dead) {
    auto b = asio::buffer(buf);
    auto [ec, n] = tls ? co_await tls->async_read_some(b, use_nothrow)
                       : co_await ts->sock.async_read_some(b, use_nothrow);
    if (ec) break;
    read_at = steady::now();
    ++read_gen;
    if (nghttp2_session_mem_recv(ng, buf.data(), n) < 0) break;
    signal();  // WINDOW_UPDATE, SETTINGS and PING acknowledgements
  }
  fail();
}

asio::awaitable<void> h2_link::writer() {
  auto self = shared_from_this();
  std::string out;
  while (!dead) {
    out.clear();
    while (out.size() < 256 * 1024) {
      const std::uint8_t* p = nullptr;
      const auto n = nghttp2_session_mem_send(ng, &p);
      if (n < 0) {
        fail();
        co_return;
      }
      if (n == 0) break;
      out.append(reinterpret_cast<const char*>(p), static_cast<std::size_t>(n));
    }
    if (out.empty()) {
      write_wake.expires_at(steady::time_point::max());
      co_await write_wake.async_wait(use_nothrow);
      continue;
    }
    auto [ec, n] = tls ? co_await asio::async_write(*tls, asio::buffer(out), use_nothrow)
                       : co_await asio::async_write(ts->sock, asio::buffer(out), use_nothrow);
    if (ec) break;
  }
  fail();
}

h2_session::h2_session(worker* w) : w_(w), connect_wait_(w->ctx) {}

h2_session::~h2_session() { close(); }

void h2_session::close() {
  if (link_) link_->fail();
  link_.reset();
}

void h2_session::slot_done() {
  if (--slots <= 0) close();
}

// The live connection, connecting (TCP, TLS with ALPN h2, the preface) when there is none; one
// slot connects while the others wait for it. Null when it cannot be had.
asio::awaitable<std::shared_ptr<h2_link>> h2_session::connected() {
  while (connecting_) {
    connect_wait_.expires_at(steady::time_point::max());
    co_await connect_wait_.async_wait(use_nothrow);
  }
  if (link_ && !link_->dead) co_return link_;
  connecting_ = true;
  auto l = std::make_shared<h2_link>(w_);
  l->ts->start_watch();
  l->ts->arm(std::chrono::microseconds(
      static_cast<std::int64_t>(std::min(w_->cfg.timeout_s, 5.0) * 1e6)));
  auto [ec] = co_await l->ts->sock.async_connect(w_->target, use_nothrow);
  bool ok = !ec;
  if (ok) {
    error_code e2;
    l->ts->sock.set_option(tcp::no_delay(true), e2);
  }
  if (ok && w_->tls) {
    l->tls = std::make_unique<asio::ssl::stream<tcp::socket&>>(l->ts->sock, *w_->tls);
    static const unsigned char alpn[] = {2, 'h', '2'};
    SSL_set_alpn_protos(l->tls->native_handle(), alpn, sizeof alpn);
    ok = co_await tls_handshake(w_, *l->tls);
    const unsigned char* sel = nullptr;
    unsigned sel_len = 0;
    if (ok) SSL_get0_alpn_selected(l->tls->native_handle(), &sel, &sel_len);
    if (ok && std::string_view(reinterpret_cast<const char*>(sel), sel_len) != "h2") {
      ok = false;
      ++w_->handshake_failures;
      if (w_->handshake_error.empty()) w_->handshake_error = "the server did not select h2 by ALPN";
    }
    if (ok) keep_session(w_, l->tls->native_handle());
  }
  l->ts->deadline = steady::time_point::max();  // streams are timed one by one from here
  ok = ok && l->start_session();
  connecting_ = false;
  connect_wait_.cancel();
  if (!ok) {
    l->fail();
    co_return nullptr;
  }
  link_ = l;
  asio::co_spawn(w_->ctx, l->reader(), asio::detached);
  asio::co_spawn(w_->ctx, l->writer(), asio::detached);
  co_return l;
}

asio::awaitable<void> h2_session::request(connection* slot, std::string_view extra, outcome& o,
                                          steady::time_point& sent_at) {
  std::string req(w_->builder.is_fixed() ? std::string_view(w_->builder.fixed())
                                         : std::string_view(slot->req));
  req.append(extra);  // a storage PUT's object: the builder's view, copied before any wait
  auto l = co_await connected();
  sent_at = steady::now();
  if (!l) {
    o.error = error_kind::connect;
    o.done = sent_at;
    co_return;
  }
  h2_request_fields f;
  if (!f.parse(req, w_->tls != nullptr)) {
    o.error = error_kind::unsent;
    o.done = sent_at;
    co_return;
  }
  h2_stream st;
  st.o = &o;
  st.wake = &slot->wake;
  st.body = f.body;
  auto nva = f.nva();
  nghttp2_data_provider prd{};
  prd.source.ptr = &st;
  prd.read_callback = read_body;
  const std::int32_t id = nghttp2_submit_request(l->ng, nullptr, nva.data(), nva.size(),
                                                 f.body.empty() ? nullptr : &prd, &st);
  if (id < 0) {
    o.error = error_kind::transport;
    o.done = sent_at;
    co_return;
  }
  ++w_->sent;
  l->live.push_back(&st);
  l->signal();
  const auto deadline =
      sent_at + std::chrono::microseconds(static_cast<std::int64_t>(w_->cfg.timeout_s * 1e6));
  while (!st.closed) {
    slot->wake.expires_at(deadline);
    co_await slot->wake.async_wait(use_nothrow);
    if (!st.closed && steady::now() >= deadline) {
      o.error = error_kind::timeout;
      o.done = steady::now();
      if (!l->dead) {
        nghttp2_session_set_stream_user_data(l->ng, id, nullptr);
        nghttp2_submit_rst_stream(l->ng, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
        l->signal();
      }
      break;
    }
  }
  std::erase(l->live, &st);
  finish_stream(w_, st);
}

}  // namespace meridian::loadtest::runner
