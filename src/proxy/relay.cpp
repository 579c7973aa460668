#include "proxy/relay.hpp"

#include <array>
#include <utility>

#include "meridian/common/log.hpp"
#include "meridian/http/chunked.hpp"

namespace meridian::proxy {

namespace asio = boost::asio;
using common::outcome;
using common::outcome_kind;

namespace {
constexpr std::size_t max_spans = 16;

// Payload read from the backend on its way to the client: each piece is shown to the attempt's
// learning and the hooks, then handed to the exchange in one send per batch.
struct relay_state {
  attempt& at;
  http::exchange& client;
  payload_hooks hooks;
  std::array<std::string_view, max_spans> spans{};
  std::size_t n = 0;

  asio::awaitable<std::size_t> read() { return at.read_more(at.next_read_deadline()); }
  bool full() const { return n == max_spans; }
  void add(std::string_view payload) {
    at.on_payload(payload);
    if (hooks.resume) hooks.resume->observe(payload);
    if (hooks.object) hooks.object->delivered(payload.size());
    spans[n++] = payload;
  }
  // Not a coroutine (one frame less per send); `spans` outlives the await.
  asio::awaitable<bool> flush(bool last) {
    std::size_t k = std::exchange(n, 0);
    return client.send(std::span<const std::string_view>(spans.data(), k), last);
  }
};

// Content-Length body: forwards exactly that many bytes; the client's response ends with it.
asio::awaitable<bool> relay_sized(relay_state& s, std::uint64_t left, bool& reusable) {
  while (true) {
    auto n = static_cast<std::size_t>(std::min<std::uint64_t>(s.at.buffered().size(), left));
    if (n) s.add(s.at.buffered().substr(0, n));
    s.at.consume(n);
    left -= n;
    if (!co_await s.flush(left == 0)) co_return false;
    if (left == 0) break;
    if (co_await s.read() == 0) co_return false;
  }
  if (!s.at.buffered().empty()) reusable = false;  // the backend sent more than it announced
  co_return true;
}

// Chunked or close-delimited body: its payload as it comes.
asio::awaitable<bool> relay_stream(relay_state& s, bool chunked_in, bool& reusable) {
  http::chunked_decoder dec;
  while (true) {
    bool finished = false;
    if (chunked_in) {
      while (!s.full() && !s.at.buffered().empty() && !dec.done()) {
        auto st = dec.decode(s.at.buffered());
        s.at.consume(st.consumed);
        if (dec.failed()) co_return false;
        if (!st.data.empty()) s.add(st.data);
        if (st.consumed == 0) break;
      }
      finished = dec.done();
    } else if (!s.at.buffered().empty()) {
      auto v = s.at.buffered();
      s.add(v);
      s.at.consume(v.size());
    }
    bool more_buffered = s.full();  // chunks left in the buffer: decode them before reading
    if (!co_await s.flush(finished)) co_return false;
    if (finished) break;
    if (more_buffered) continue;
    if (co_await s.read() == 0) {
      if (chunked_in || s.at.timed_out() || s.client.client_gone()) co_return false;
      // A close-delimited body ended normally.
      reusable = false;
      co_return co_await s.flush(true);
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
outcome settle(attempt& at, http::exchange& client, bool ok, bool reusable) {
  outcome o;
  o.status = at.response().status;
  o.bytes_to_client = client.bytes_out();
  if (!ok) {
    if (client.client_gone()) {
      o.kind = outcome_kind::client_gone;
      // Gone, or cut for reading slower than limits.min_data_rate (the exchange says which).
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

}  // namespace

asio::awaitable<outcome> relay(attempt& at, http::exchange& client, payload_hooks hooks) {
  const auto& resp = at.response();
  client.start_response(resp, resp.body, resp.content_length);
  at.release_head();
  relay_state s{at, client, hooks};
  bool reusable = resp.keep_alive && at.request_complete();
  bool ok;
  if (resp.body == http::body_kind::none) {
    if (!at.buffered().empty()) reusable = false;  // bytes after a bodiless response
    ok = co_await s.flush(true);
  } else if (resp.body == http::body_kind::content_length &&
             at.buffered().size() >= resp.content_length) {
    // The whole body came with the head (small responses): one send, with the head.
    auto n = static_cast<std::size_t>(resp.content_length);
    s.add(at.buffered().substr(0, n));
    at.consume(n);
    if (!at.buffered().empty()) reusable = false;  // the backend sent more than it announced
    ok = co_await s.flush(true);
  } else if (resp.body == http::body_kind::content_length) {
    ok = co_await relay_sized(s, resp.content_length, reusable);
  } else {
    ok = co_await relay_stream(s, resp.body == http::body_kind::chunked, reusable);
  }
  co_return settle(at, client, ok, reusable);
}

asio::awaitable<outcome> relay_continuation(attempt& at, http::exchange& client,
                                            payload_hooks hooks) {
  relay_state s{at, client, hooks};
  bool reusable = at.response().keep_alive && at.request_complete();
  const auto& resp = at.response();
  bool ok;
  if (resp.body == http::body_kind::content_length)
    ok = co_await relay_sized(s, resp.content_length, reusable);
  else
    ok = co_await relay_stream(s, resp.body == http::body_kind::chunked, reusable);
  co_return settle(at, client, ok, reusable);
}

bool error_event_fits(const attempt& at, const http::exchange& client) {
  // Inside an event, the error could only arrive truncated; a declared length has no room.
  return !client.response_sized() && at.stream().sse() && at.stream().at_event_boundary();
}

asio::awaitable<void> end_broken_stream(attempt& at, http::exchange& client, const outcome& o,
                                        bool tell) {
  bool deadline = at.timed_out() && at.past_total();
  at.count_interruption(deadline ? metrics::interruption::deadline
                                 : metrics::interruption::upstream);
  if (!tell) co_return;
  auto kind =
      deadline ? common::error_kind::upstream_timeout : common::error_kind::upstream_unavailable;
  std::string& event = at.scratch_text();
  event = common::cat("data: ", common::error_body(kind, o.message), "\n\n");
  std::array<std::string_view, 1> payload{event};
  co_await client.send(payload, false);
}

}  // namespace meridian::proxy
