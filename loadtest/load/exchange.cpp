#include "load/exchange.hpp"

#include <algorithm>
#include <array>
#include <tuple>

#include "load/h2_client.hpp"
#include "load/results.hpp"

namespace meridian::loadtest::runner {

namespace {

// What one exchange has seen of the response so far.
struct response_progress {
  bool head_req = false;  // the request was a HEAD: no body follows
  bool have_head = false;
  bool any_bytes = false;
  bool is_sse = false;
  token_progress tokens;
};

// Parses the response head once it is complete and sets up the body decoder. Returns 0 while more
// bytes are needed, a negative value on a malformed head, 1 once the head is consumed.
int take_head(worker* w, connection* c, outcome& o, response_progress& p) {
  response_head h;
  long hl = parse_response_head(c->rb.view(), h, w->cfg.backend_header);
  if (hl == 0) return 0;
  if (hl < 0) return -1;
  p.have_head = true;
  o.status = h.status;
  if (!h.backend.empty()) o.backend = w->backend_index(h.backend);
  if (!h.keep_alive) c->connected = false;  // closed after this exchange
  p.is_sse = h.content_type.starts_with("text/event-stream");
  if (p.head_req || h.status == 204 || h.status == 304 || (h.status >= 100 && h.status < 200))
    c->dec.reset_length(0);
  else if (h.chunked)
    c->dec.reset_chunked();
  else if (h.content_length >= 0)
    c->dec.reset_length(static_cast<std::uint64_t>(h.content_length));
  else {
    c->dec.reset_until_close();
    c->connected = false;
  }
  c->rb.consume(static_cast<std::size_t>(hl));
  if (p.is_sse) c->sse.reset();
  return 1;
}

// Decodes the body bytes buffered so far: SSE events are inspected as they complete, a plain
// OpenAI body is kept (up to 16 MiB) for inspection at the end.
void feed_body(worker* w, connection* c, outcome& o, response_progress& p, steady::time_point now) {
  const bool openai = w->cfg.api != openai_api::none;
  std::uint32_t events_this_read = 0;
  auto used = c->dec.feed(c->rb.view(), [&](std::string_view d) {
    if (!openai) return;
    if (p.is_sse) {
      c->sse.feed(d, [&](std::string_view ev) {
        on_openai_event(w, o, p.tokens, ev, now, events_this_read);
      });
    } else if (c->body.size() < (16u << 20)) {
      c->body.append(d);
    }
  });
  c->rb.consume(used);
}

// Classifies a response that was read to its end.
void finish_response(worker* w, connection* c, outcome& o, const response_progress& p) {
  const bool openai = w->cfg.api != openai_api::none;
  if (o.status >= 400 || o.status < 200) {
    if (o.error == error_kind::none) o.error = error_kind::http_status;
  } else if (openai && !p.is_sse) {
    auto info = inspect_openai_body(c->body);
    if (info.is_error) o.error = error_kind::bad_response;
    if (info.completion_tokens >= 0) o.tokens = static_cast<std::uint32_t>(info.completion_tokens);
    o.first_token = o.done;
  } else if (openai && p.is_sse && !p.tokens.saw_done && o.error == error_kind::none) {
    o.error = error_kind::bad_response;  // stream ended without [DONE]
  }
  if (c->rb.size() > 0) c->connected = false;  // unexpected extra bytes: don't trust the connection
}

// One request/response exchange on a connected socket. Returns false if nothing at all came back on
// a reused connection (the server closed it while idle), which the caller retries once.
// Writes and reads go through TLS where the target is https://. A peer that closes without
// close_notify ends the stream as a plain FIN would (the response framing decides).
template <typename Buffers>
asio::awaitable<std::tuple<error_code, std::size_t>> send(connection* c, const Buffers& b) {
  if (c->tls) co_return co_await asio::async_write(*c->tls, b, use_nothrow);
  co_return co_await asio::async_write(c->ts->sock, b, use_nothrow);
}

asio::awaitable<std::tuple<error_code, std::size_t>> receive(connection* c,
                                                            asio::mutable_buffer b) {
  if (!c->tls) co_return co_await c->ts->sock.async_read_some(b, use_nothrow);
  auto [ec, n] = co_await c->tls->async_read_some(b, use_nothrow);
  if (ec == asio::ssl::error::stream_truncated) ec = asio::error::eof;
  co_return std::tuple{ec, n};
}

asio::awaitable<bool> exchange(worker* w, connection* c, outcome& o) {
  auto* ts = c->ts.get();
  ts->arm(std::chrono::microseconds(static_cast<std::int64_t>(w->cfg.timeout_s * 1e6)));
  const auto head_buf = asio::buffer(w->builder.is_fixed() ? w->builder.fixed() : c->req);
  error_code wec;
  if (w->builder.extra_body().empty()) {
    std::tie(wec, std::ignore) = co_await send(c, head_buf);
  } else {
    std::array<asio::const_buffer, 2> bufs{
        head_buf, asio::buffer(w->builder.extra_body().data(), w->builder.extra_body().size())};
    std::tie(wec, std::ignore) = co_await send(c, bufs);
  }
  if (wec) {
    o.error = ts->timed_out ? error_kind::timeout : error_kind::transport;
    co_return !c->reused;
  }
  response_progress p;
  p.head_req = w->builder.last_is_head();
  c->body.clear();
  while (true) {
    auto buf = c->rb.prepare(4096);
    if (buf.size() == 0) {
      o.error = error_kind::bad_response;
      co_return true;
    }
    auto [ec, n] = co_await receive(c, buf);
    const auto now = steady::now();
    if (ec) {
      if (p.have_head && ec == asio::error::eof) {
        c->dec.finish_on_close();
        if (c->dec.done()) {
          o.done = now;
          c->connected = false;
          break;
        }
      }
      o.error = ts->timed_out ? error_kind::timeout : error_kind::transport;
      o.done = now;
      co_return p.any_bytes || !c->reused;
    }
    p.any_bytes = true;
    c->rb.commit(n);
    if (!p.have_head) {
      const int head = take_head(w, c, o, p);
      if (head == 0) continue;
      if (head < 0) {
        o.error = error_kind::bad_response;
        o.done = now;
        co_return true;
      }
    }
    feed_body(w, c, o, p, now);
    if (c->dec.failed()) {
      o.error = error_kind::bad_response;
      o.done = now;
      co_return true;
    }
    if (c->dec.done()) {
      o.done = now;
      break;
    }
  }
  finish_response(w, c, o, p);
  co_return true;
}

}  // namespace

void on_openai_event(worker* w, outcome& o, token_progress& p, std::string_view ev,
                     steady::time_point now, std::uint32_t& events_this_read) {
  auto info = inspect_openai_chunk(ev);
  if (info.done) p.saw_done = true;
  if (info.is_error && !info.done) o.error = error_kind::bad_response;
  if (info.has_usage && info.completion_tokens >= 0) {
    o.has_usage = true;
    o.tokens = static_cast<std::uint32_t>(info.completion_tokens);
  }
  if (info.has_token) {
    ++w->token_events;
    if (!o.has_usage) ++o.tokens;
    if (o.first_token == steady::time_point{})
      o.first_token = now;
    else
      w->itl.record(to_ns(now - p.last_token));
    p.last_token = now;
    if (++events_this_read > 1) ++o.clumped;
  }
}

void drop_connection(connection* c) {
  if (c->h2) return c->h2->close();
  c->tls.reset();
  if (c->ts) {
    c->ts->stop();
    error_code ec;
    c->ts->sock.close(ec);
  }
  c->connected = false;
  c->reused = false;
}

// The TLS handshake on a new connection: SNI, verification by name (or by the URL's address),
// the worker's last session offered; timed on its own.
asio::awaitable<bool> tls_handshake(worker* w, asio::ssl::stream<tcp::socket&>& s) {
  SSL* ssl = s.native_handle();
  if (!w->cfg.sni.empty()) SSL_set_tlsext_host_name(ssl, w->cfg.sni.c_str());
  if (!w->cfg.insecure) {
    if (!w->cfg.sni.empty())
      SSL_set1_host(ssl, w->cfg.sni.c_str());
    else
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), w->cfg.host.c_str());
  }
  if (w->cfg.tls_resume && w->session) SSL_set_session(ssl, w->session);
  const auto begin = steady::now();
  auto [ec] = co_await s.async_handshake(asio::ssl::stream_base::client, use_nothrow);
  if (ec) {
    ++w->handshake_failures;
    if (w->handshake_error.empty()) {
      long v = SSL_get_verify_result(ssl);
      w->handshake_error = v != X509_V_OK ? X509_verify_cert_error_string(v) : ec.message();
    }
    co_return false;
  }
  w->handshake.record(to_ns(steady::now() - begin));
  ++w->handshakes;
  if (SSL_session_reused(ssl)) ++w->resumed;
  co_return true;
}

// After a response on a TLS connection: a copy of its session (TLS 1.3 sends it after the
// handshake) is the one the next new connection offers. A copy: OpenSSL marks a connection's own
// session not resumable when the connection is dropped without a close_notify.
void keep_session(worker* w, SSL* ssl) {
  if (!w->cfg.tls_resume) return;
  SSL_SESSION* s = SSL_get0_session(ssl);
  if (!s || !SSL_SESSION_is_resumable(s)) return;
  SSL_SESSION* copy = SSL_SESSION_dup(s);
  if (!copy) return;
  if (w->session) SSL_SESSION_free(w->session);
  w->session = copy;
}

asio::awaitable<bool> ensure_connected(worker* w, connection* c) {
  if (c->connected) co_return true;
  c->ts = std::make_shared<timed_socket>(w->ctx.get_executor());
  c->ts->start_watch();
  c->ts->arm(
      std::chrono::microseconds(static_cast<std::int64_t>(std::min(w->cfg.timeout_s, 5.0) * 1e6)));
  auto [ec] = co_await c->ts->sock.async_connect(w->target, use_nothrow);
  if (ec) {
    drop_connection(c);
    co_return false;
  }
  error_code e2;
  c->ts->sock.set_option(tcp::no_delay(true), e2);
  if (w->tls) c->tls = std::make_unique<asio::ssl::stream<tcp::socket&>>(c->ts->sock, *w->tls);
  if (c->tls && !co_await tls_handshake(w, *c->tls)) {
    drop_connection(c);
    co_return false;
  }
  c->connected = true;
  c->reused = false;
  c->rb.consume(c->rb.size());
  co_return true;
}

void release_connection(connection* c) {
  if (c->h2)
    c->h2->slot_done();
  else
    drop_connection(c);
}

asio::awaitable<void> do_request(worker* w, connection* c, steady::time_point intended) {
  const std::uint64_t seq = w->seq++;
  if (!w->builder.is_fixed()) w->builder.build(c->req, seq);
  const int prompt_tokens = w->builder.last_prompt_tokens();
  ++w->inflight;
  w->a_inflight.store(w->inflight, std::memory_order_relaxed);
  outcome o;
  steady::time_point sent_at{};
  if (c->h2) co_await c->h2->request(c, w->builder.extra_body(), o, sent_at);
  for (int attempt = 0; !c->h2 && attempt < 2; ++attempt) {
    o = outcome{};
    bool up = c->connected;
    if (!up) up = co_await ensure_connected(w, c);
    if (!up) {
      o.error = error_kind::connect;
      o.done = steady::now();
      sent_at = o.done;
      break;
    }
    sent_at = steady::now();
    ++w->sent;
    const bool final = co_await exchange(w, c, o);
    if (!c->reused && c->tls) keep_session(w, c->tls->native_handle());
    if (o.error != error_kind::none || !c->connected || w->cfg.new_connection)
      drop_connection(c);
    else
      c->reused = true;
    if (final) break;
    --w->sent;
  }
  if (o.done == steady::time_point{}) o.done = steady::now();
  --w->inflight;
  w->a_inflight.store(w->inflight, std::memory_order_relaxed);
  record(w, c, intended, sent_at, o, prompt_tokens);
}

}  // namespace meridian::loadtest::runner
