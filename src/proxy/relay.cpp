#include "proxy/relay.hpp"

#include <array>

#include "meridian/common/log.hpp"
#include "meridian/http/chunked.hpp"
#include "meridian/http/headers.hpp"

namespace meridian::proxy {

namespace asio = boost::asio;
using common::outcome;
using common::outcome_kind;

namespace {
constexpr std::size_t max_spans = 16;

struct relay_state {
  attempt& at;
  http::connection& client;
  std::vector<asio::const_buffer>& out;  // the attempt's, reused: no allocation per response
  std::string& chunk_heads;
  bool client_chunked = false;

  asio::awaitable<std::size_t> read() { return at.read_more(at.next_read_deadline()); }
  asio::awaitable<bool> flush() {
    bool ok = out.empty() ? true : co_await client.write(out);
    out.clear();
    co_return ok;
  }
  // Adds the chunked bytes buffered from upstream to `out` as chunks for the client (or raw
  // bytes when the client gets a close-delimited body). False on malformed chunking.
  bool frame_chunks(http::chunked_decoder& dec) {
    chunk_heads.clear();
    std::array<std::pair<std::size_t, std::size_t>, max_spans> hdr{};
    std::array<std::string_view, max_spans> data{};
    std::size_t spans = 0;
    while (spans < max_spans && !at.buffered().empty() && !dec.done()) {
      auto st = dec.decode(at.buffered());
      at.consume(st.consumed);
      if (dec.failed()) return false;
      if (!st.data.empty()) {
        at.on_payload(st.data);
        std::size_t pos = chunk_heads.size();
        if (client_chunked) http::append_chunk_header(chunk_heads, st.data.size());
        hdr[spans] = {pos, chunk_heads.size() - pos};
        data[spans++] = st.data;
      }
      if (st.consumed == 0) break;
    }
    for (std::size_t i = 0; i < spans; ++i) {
      if (client_chunked)
        out.push_back(asio::buffer(chunk_heads.data() + hdr[i].first, hdr[i].second));
      out.push_back(asio::buffer(data[i]));
      if (client_chunked) out.push_back(asio::buffer(http::chunk_crlf));
    }
    if (dec.done() && client_chunked) out.push_back(asio::buffer(http::last_chunk));
    return true;
  }
};

// Content-Length body: forwards exactly that many bytes.
asio::awaitable<bool> relay_sized(relay_state& s, std::uint64_t left, bool& reusable) {
  while (true) {
    auto n = static_cast<std::size_t>(std::min<std::uint64_t>(s.at.buffered().size(), left));
    if (n) s.out.push_back(asio::buffer(s.at.buffered().data(), n));
    if (n) s.at.on_payload(s.at.buffered().substr(0, n));
    s.at.consume(n);
    left -= n;
    if (!co_await s.flush()) co_return false;
    if (left == 0) break;
    if (co_await s.read() == 0) co_return false;
  }
  if (!s.at.buffered().empty()) reusable = false;  // the backend sent more than it announced
  co_return true;
}

// Chunked or close-delimited body, re-framed for the client.
asio::awaitable<bool> relay_stream(relay_state& s, bool chunked_in, bool& reusable) {
  http::chunked_decoder dec;
  while (true) {
    bool finished = false;
    if (chunked_in) {
      if (!s.frame_chunks(dec)) co_return false;
      finished = dec.done();
    } else if (!s.at.buffered().empty()) {
      auto v = s.at.buffered();
      s.at.on_payload(v);
      s.chunk_heads.clear();
      if (s.client_chunked) http::append_chunk_header(s.chunk_heads, v.size());
      if (s.client_chunked) s.out.push_back(asio::buffer(s.chunk_heads));
      s.out.push_back(asio::buffer(v));
      if (s.client_chunked) s.out.push_back(asio::buffer(http::chunk_crlf));
      s.at.consume(v.size());
    }
    if (!co_await s.flush()) co_return false;
    if (finished) break;
    if (co_await s.read() == 0) {
      if (chunked_in || s.at.timed_out() || s.client.client_gone()) co_return false;
      // A close-delimited body ended normally.
      if (s.client_chunked) s.out.push_back(asio::buffer(http::last_chunk));
      reusable = false;
      co_return co_await s.flush();
    }
  }
  if (!s.at.buffered().empty()) reusable = false;
  if (!chunked_in) reusable = false;
  co_return true;
}
// Why the backend broke off a response.
void broken(attempt& at, outcome& o) {
  bool deadline = at.timed_out() && at.past_total();
  if (at.timed_out()) {
    o.kind = outcome_kind::stalled_response;
    o.message = deadline ? "the request's deadline passed during the response"
                         : "upstream stalled during the response";
  } else {
    o.kind = outcome_kind::reset_during_response;
    o.message = at.found_down() ? "upstream was found down by its health probes during the response"
                                : "upstream failed during the response";
  }
}

// The relay's outcome: ok when the whole body went through, else who broke off; ends the
// attempt (its connection pooled when reusable).
outcome settle(attempt& at, http::connection& client, bool ok, bool reusable) {
  outcome o;
  o.status = at.response().status;
  o.bytes_to_client = client.bytes_out();
  if (!ok) {
    client.close_after_response();
    if (client.client_gone()) {
      o.kind = outcome_kind::client_gone;
      // Gone, or cut for reading slower than limits.min_data_rate (the connection says which).
      o.message = client.note().empty() ? std::string("client went away during the response")
                                        : std::string(client.note());
    } else {
      broken(at, o);
      at.mark_cut();
    }
  }
  if (ok) at.mark_complete();
  at.finish(ok && reusable);
  return o;
}

// A continuation sized by Content-Length goes on inside the client's chunked (or
// close-delimited) response: its bytes are framed as chunks.
asio::awaitable<bool> relay_sized_as_stream(relay_state& s, std::uint64_t left, bool& reusable) {
  while (true) {
    auto n = static_cast<std::size_t>(std::min<std::uint64_t>(s.at.buffered().size(), left));
    if (n) {
      auto v = s.at.buffered().substr(0, n);
      s.at.on_payload(v);
      s.chunk_heads.clear();
      if (s.client_chunked) http::append_chunk_header(s.chunk_heads, n);
      if (s.client_chunked) s.out.push_back(asio::buffer(s.chunk_heads));
      s.out.push_back(asio::buffer(v));
      if (s.client_chunked) s.out.push_back(asio::buffer(http::chunk_crlf));
      s.at.consume(n);
      left -= n;
    }
    if (!co_await s.flush()) co_return false;
    if (left == 0) break;
    if (co_await s.read() == 0) co_return false;
  }
  if (s.client_chunked) s.out.push_back(asio::buffer(http::last_chunk));
  if (!s.at.buffered().empty()) reusable = false;
  co_return co_await s.flush();
}
}  // namespace

asio::awaitable<outcome> relay(attempt& at, http::connection& client, std::string& head_out) {
  const auto& resp = at.response();
  bool keep = client.keep_alive() && at.request_complete();
  http::out_framing framing = http::out_framing::none;
  std::uint64_t cl = 0;
  bool client_chunked = false;
  switch (resp.body) {
    case http::body_kind::none:
      break;
    case http::body_kind::content_length:
      framing = http::out_framing::content_length;
      cl = resp.content_length;
      break;
    case http::body_kind::chunked:
    case http::body_kind::until_close:
      client_chunked = client.client_minor() == 1;
      framing = client_chunked ? http::out_framing::chunked : http::out_framing::close_delimited;
      if (!client_chunked) keep = false;
      break;
  }
  if (!keep) client.close_after_response();
  http::build_downstream_response(head_out, resp, client.request_id(), framing, cl, keep,
                                  client.client_minor());
  at.release_head();
  client.response_started(resp.status);
  relay_state s{at, client, at.scratch_buffers(), at.scratch_text(), client_chunked};
  s.out.clear();
  s.out.push_back(asio::buffer(head_out));
  bool reusable = resp.keep_alive && at.request_complete();
  bool ok;
  if (resp.body == http::body_kind::none) {
    if (!at.buffered().empty()) reusable = false;  // bytes after a bodiless response
    ok = co_await client.write(s.out);
  } else if (resp.body == http::body_kind::content_length && at.buffered().size() >= cl) {
    // The whole body came with the head (small responses): one write, no more reads.
    s.out.push_back(asio::buffer(at.buffered().data(), static_cast<std::size_t>(cl)));
    at.on_payload(at.buffered().substr(0, static_cast<std::size_t>(cl)));
    at.consume(static_cast<std::size_t>(cl));
    if (!at.buffered().empty()) reusable = false;  // the backend sent more than it announced
    ok = co_await client.write(s.out);
  } else if (resp.body == http::body_kind::content_length) {
    ok = co_await relay_sized(s, cl, reusable);
  } else {
    ok = co_await relay_stream(s, resp.body == http::body_kind::chunked, reusable);
  }
  co_return settle(at, client, ok, reusable);
}

asio::awaitable<outcome> relay_continuation(attempt& at, http::connection& client,
                                            bool client_chunked) {
  relay_state s{at, client, at.scratch_buffers(), at.scratch_text(), client_chunked};
  s.out.clear();
  bool reusable = at.response().keep_alive && at.request_complete();
  bool ok;
  if (at.response().body == http::body_kind::content_length && !client_chunked)
    ok = co_await relay_sized(s, at.response().content_length, reusable);
  else if (at.response().body == http::body_kind::content_length)
    ok = co_await relay_sized_as_stream(s, at.response().content_length, reusable);
  else
    ok = co_await relay_stream(s, at.response().body == http::body_kind::chunked, reusable);
  co_return settle(at, client, ok, reusable);
}

bool error_event_fits(const attempt& at) {
  // Inside an event, the error could only arrive truncated; a Content-Length body has no room.
  auto body = at.response().body;
  bool framed = body == http::body_kind::chunked || body == http::body_kind::until_close;
  return framed && at.stream().sse() && at.stream().at_event_boundary();
}

asio::awaitable<void> end_broken_stream(attempt& at, http::connection& client, const outcome& o,
                                        bool tell) {
  bool deadline = at.timed_out() && at.past_total();
  at.count_interruption(deadline ? metrics::interruption::deadline
                                 : metrics::interruption::upstream);
  if (!tell) co_return;
  auto kind =
      deadline ? common::error_kind::upstream_timeout : common::error_kind::upstream_unavailable;
  std::string& event = at.scratch_text();
  event.clear();
  std::string data = common::cat("data: ", common::error_body(kind, o.message), "\n\n");
  bool chunked = client.client_minor() == 1;
  if (chunked) http::append_chunk_header(event, data.size());
  event += data;
  if (chunked) event += http::chunk_crlf;
  auto& out = at.scratch_buffers();
  out.clear();
  out.push_back(asio::buffer(event));
  co_await client.write(out);
}

}  // namespace meridian::proxy
