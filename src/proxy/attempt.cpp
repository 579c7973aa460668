#include "proxy/attempt.hpp"

#include <array>

#include "meridian/common/log.hpp"
#include "meridian/http/chunked.hpp"
#include "meridian/http/headers.hpp"
#include "meridian/routing/cost.hpp"

namespace meridian::proxy {

namespace asio = boost::asio;
using common::outcome;
using common::outcome_kind;

namespace {
constexpr std::size_t max_spans = 16;

bool observe_whole(std::string_view raw, http::body_kind kind, body_tap& tap) {
  if (kind != http::body_kind::chunked) return tap.observe(raw);
  bool ok = true;
  http::for_each_chunk(raw, [&](std::string_view d) { ok = ok && tap.observe(d); });
  return ok;
}

// The wait latency_aware's cost model expects on the endpoint at the pick, taken off the
// latency it then observes; 0 for the other balancers, whose estimates include queueing.
// Moves the views of `h` from the `n` bytes at `from` to the same bytes at `to` (the buffer
// they point into grew).
void rebase(http::response_head& h, const char* from, std::size_t n, const char* to) {
  auto move = [&](std::string_view& v) {
    if (v.data() >= from && v.data() < from + n) v = {to + (v.data() - from), v.size()};
  };
  move(h.reason);
  for (auto& f : h.headers.first(h.header_count)) {
    move(f.name);
    move(f.value);
  }
  for (std::size_t i = 0; i < h.connection_token_count; ++i) move(h.connection_tokens[i]);
}

// What latency_aware's cost model makes of the endpoint now: the wait it expects (taken off the
// latency the try then observes; 0 for the other balancers, whose estimates include queueing)
// and the requests it holds (the batch the try joins).
std::pair<double, double> expected_load(const config::gateway_config& cfg, std::size_t cluster,
                                        const upstream::endpoint_stats& s, common::time_point now) {
  const auto& c = cfg.clusters[cluster];
  auto e = routing::expected_cost(s, routing::cost_params::from(c), now);
  return {c.balancer == config::balancer_kind::latency_aware ? e.queue : 0, e.outstanding};
}
// Seconds of prefill the engine will spend on the prompt blocks it was not credited with, at its
// learned rate (else the cluster's prior); 0 without prefix affinity.
double expected_prefill(const config::gateway_config& cfg, std::size_t cluster,
                        const upstream::endpoint_stats& s, std::int32_t uncached) {
  const auto& pa = cfg.clusters[cluster].prefix_affinity;
  if (!pa.enabled || uncached <= 0) return 0;
  double rate = s.prefill_per_block >= 0
                    ? s.prefill_per_block
                    : std::chrono::duration<double>(pa.prefill_per_block).count();
  return uncached * rate;
}

// How far the buffered start of a chunked body goes: short of a payload byte, to one (or to the
// body's end), or into a framing error (`why`).
enum class first_chunk { need_more, ready, malformed };
first_chunk scan_first_chunk(std::string_view in, std::string_view& why) {
  http::chunked_decoder d;
  while (!in.empty()) {
    auto step = d.decode(in);
    if (d.failed()) {
      why = d.error();
      return first_chunk::malformed;
    }
    if (!step.data.empty() || d.done()) return first_chunk::ready;
    if (step.consumed == 0) break;
    in.remove_prefix(step.consumed);
  }
  return first_chunk::need_more;
}
}  // namespace

attempt::attempt(worker_context& w) : w_(w), deadline_(w.io, *w.clock, &attempt::on_expire, this) {
  chunk_heads_.reserve(max_spans * 20 + 8);
  out_.reserve(max_spans * 3 + 2);
}

attempt::~attempt() {
  if (link_) finish(false);
}

void attempt::on_expire(void* self) {
  static_cast<attempt*>(self)->cancel();
}

// Shut down, not closed: the pending read, write or connect then ends by itself (EOF, EPIPE,
// a connect that reports done) and the try notices why. Closing a socket under a pending
// operation cancels it, which on Asio 1.81's io_uring backend let a later completion corrupt
// other requests (seen with hedging: streams cut and a 10 s stall in 900 requests).
void attempt::cancel() {
  link_.shutdown();
}

void attempt::endpoint_down() {
  down_ = true;
  cancel();  // a connect in progress ends at its own (short) deadline
}

bool attempt::check_whole_body(const http::exchange& client, body_tap& tap) {
  tap.rewind();
  return observe_whole(client.buffered_body(), client.body().kind(), tap);
}

outcome attempt::fail(outcome_kind kind, std::string message) {
  finish(false);
  outcome o;
  o.kind = kind;
  o.message = std::move(message);
  if (abandoned_) {
    o.kind = outcome_kind::abandoned;
  } else if (down_ && kind != outcome_kind::client_gone) {
    o.kind = outcome_kind::endpoint_down;
    o.message = common::cat("upstream ", ep_->info->address,
                            " was found down by its health probes before it answered");
  }
  return o;
}

void attempt::finish(bool reusable) {
  deadline_.clear();
  if (down_watch::is_linked()) down_watch::unlink();
  if (link_) {
    if (reusable) {
      w_.ups.release(*ep_, std::move(link_), w_.clock->now());
    } else {
      link_.close();
      w_.ups.closed(*ep_);
    }
    link_ = upstream::link();
  }
  if (in_flight_) {
    in_flight_ = false;
    report_done();
    ep_->metrics->in_flight.sub();
  }
  if (buf_) w_.buffers.give(std::move(buf_));
}

asio::awaitable<std::size_t> attempt::read_more(common::time_point deadline) {
  auto& b = *buf_;
  // The response head's bytes, [0, pinned_), stay where they are until the relay has
  // serialized it: resp_ points into them.
  if (begin_ == end_) begin_ = end_ = pinned_;
  if (b.size - end_ < 4096) {
    if (begin_ > pinned_) {
      std::memmove(b.bytes.get() + pinned_, b.bytes.get() + begin_, end_ - begin_);
      end_ -= begin_ - pinned_;
      begin_ = pinned_;
    }
    if (b.size - end_ < 4096) {
      const char* old = b.bytes.get();
      b.grow(end_);
      if (pinned_ > 0) rebase(resp_, old, pinned_, b.bytes.get());
    }
  }
  deadline_.set(deadline);
  auto [ec, n] = co_await link_.read_some(asio::buffer(b.bytes.get() + end_, b.size - end_));
  if (ec) co_return 0;
  end_ += n;
  co_return n;
}

// ---- the whole try -----------------------------------------------------------------------------

asio::awaitable<outcome> attempt::run(try_spec t, http::exchange& client) {
  ep_ = std::move(t.endpoint);
  cfg_ = t.config ? t.config : w_.snap->cfg.get();
  timeouts_ = t.timeouts;
  total_ = t.total;
  rm_ = t.route;
  request_start_ = t.request_start;
  uncached_ = t.uncached;
  prompt_blocks_ = t.prompt_blocks;
  transfer_ = t.transfer;
  body_override_ = t.body;
  reused_ = abandoned_ = down_ = false;
  if (down_watch::is_linked()) down_watch::unlink();  // a try not finished (never, so far)
  ep_->watchers.push_back(*this);
  request_complete_ = false;
  begin_ = end_ = pinned_ = 0;
  deadline_.reset();
  const auto& info = *ep_->info;
  auto& em = *ep_->metrics;
  // Counted from the pick, so a burst of requests sees each other's choices.
  in_flight_ = true;
  answered_ = complete_ = observe_ = false;
  deferred_ttft_ = -1;
  steady_seconds_ = 0;
  steady_tokens_ = 0;
  picked_at_ = w_.clock->now();
  // The pick's own figures where it modelled the endpoint's load; else the cost model's now.
  if (t.expected_queue >= 0)
    std::tie(queued_, batch_at_pick_) = std::pair{t.expected_queue, t.expected_outstanding};
  else
    std::tie(queued_, batch_at_pick_) = expected_load(*cfg_, info.cluster, ep_->stats, picked_at_);
  batch_at_pick_ += 1;  // itself
  prefill_ = expected_prefill(*cfg_, info.cluster, ep_->stats, uncached_);
  w_.ups.request_started(*ep_, picked_at_, prefill_);
  relayed_ = 0;
  in_flight_at_pick_ = gateway_in_flight(ep_->stats);
  counted_transfer_ = std::exchange(transfer_, 0.0);
  ep_->stats.transfer_bytes += counted_transfer_;
  em.in_flight.add();
  em.requests.inc();
  if (t.may_reuse) {
    if (auto sock = w_.ups.take_idle(*ep_, w_.clock->now())) {
      link_ = std::move(*sock);
      reused_ = true;
      w_.metrics.cluster(info.cluster).connections_reused.inc();
    }
  }
  if (!link_) {
    auto o = co_await connect();
    if (!o.ok()) co_return o;
  }
  buf_ = w_.buffers.take();
  sent_at_ = w_.clock->now();
  method_ = client.method();
  client_ = &client;
  bool replayable = false;
  body_held_ = false;
  auto o = co_await send(client, t.head, t.tap, replayable);
  if (!o.ok()) co_return o;
  o = co_await read_head(replayable);
  if (o.ok()) o = co_await await_body();
  if (o.ok()) em.first_byte.observe(common::seconds_between(sent_at_, w_.clock->now()));
  body_held_ = replayable;
  co_return o;
}

// ---- the request -------------------------------------------------------------------------------

asio::awaitable<outcome> attempt::send(http::exchange& client, std::string_view head, body_tap* tap,
                                       bool& replayable) {
  deadline_.set(within_total(w_.clock->now() + timeouts_.idle));
  const auto& body = client.body();
  // A body whole in the buffer goes with the head and is consumed only once a response head
  // arrives, so a stale pooled connection can be retried with the same bytes. So does a body
  // given in place of the client's (a continuation's, Content-Length framed).
  replayable = body.complete() || body_override_;
  if (tap) tap->rewind();
  if (replayable) {
    std::string_view raw = body_override_ ? *body_override_ : client.buffered_body();
    auto kind = body_override_ ? http::body_kind::content_length : body.kind();
    body_override_.reset();
    if (tap && !observe_whole(raw, kind, *tap))
      co_return fail(outcome_kind::bad_request_body, std::string(tap->why()));
    out_.clear();
    out_.push_back(asio::buffer(head));
    if (kind == http::body_kind::chunked) {
      chunk_heads_.clear();
      std::size_t chunks = 0;
      http::for_each_chunk(raw, [&](std::string_view) { ++chunks; });
      chunk_heads_.reserve(chunks * 20 + 8);  // no reallocation once buffers point into it
      http::for_each_chunk(raw, [&](std::string_view data) {
        std::size_t at = chunk_heads_.size();
        http::append_chunk_header(chunk_heads_, data.size());
        out_.push_back(asio::buffer(chunk_heads_.data() + at, chunk_heads_.size() - at));
        out_.push_back(asio::buffer(data));
        out_.push_back(asio::buffer(http::chunk_crlf));
      });
      out_.push_back(asio::buffer(http::last_chunk));
    } else if (!raw.empty()) {
      out_.push_back(asio::buffer(raw));
    }
    auto [ec, n] = co_await link_.write(out_);
    bool ok = !ec;
    request_complete_ = ok;
    if (!ok && reused_)
      co_return fail(outcome_kind::stale_connection, "pooled upstream connection was closed");
    co_return outcome{};  // a failed write may still have a response to read (an early answer)
  }
  std::array<asio::const_buffer, 1> h{asio::buffer(head)};
  auto [ec, n] = co_await link_.write(h);
  if (ec) {
    if (reused_)
      co_return fail(outcome_kind::stale_connection, "pooled upstream connection was closed");
    if (n == 0)
      co_return fail(outcome_kind::reset_before_request,
                     "upstream closed before receiving the request");
    co_return fail(outcome_kind::reset_before_response,
                   "upstream closed while receiving the request");
  }
  co_return co_await stream_body(client, tap);
}

// Streams the rest of the body, re-framed; the client's data is checked before it goes out.
asio::awaitable<outcome> attempt::stream_body(http::exchange& client, body_tap* tap) {
  bool chunked = client.body().kind() == http::body_kind::chunked;
  std::array<std::string_view, max_spans> spans;
  while (true) {
    std::size_t n = 0;
    auto r = co_await client.read_body(spans, n);
    if (r != http::body_result::ok) {
      // Aborted without a terminating chunk: the backend cannot take a partial body as whole.
      switch (r) {
        case http::body_result::client_gone:
          co_return fail(outcome_kind::client_gone, "client closed during the request body");
        case http::body_result::timeout:
          co_return fail(outcome_kind::request_body_timeout, "request body timeout");
        case http::body_result::too_large:
          co_return fail(outcome_kind::request_body_too_large,
                         "request body exceeds the size limit");
        default:
          co_return fail(outcome_kind::bad_request_body,
                         common::cat("invalid request body: ", client.body_error()));
      }
    }
    for (std::size_t i = 0; i < n; ++i)
      if (tap && !tap->observe(spans[i]))
        co_return fail(outcome_kind::bad_request_body, std::string(tap->why()));
    bool last = client.body().finished();
    out_.clear();
    chunk_heads_.clear();
    for (std::size_t i = 0; i < n; ++i) {
      if (chunked) {
        std::size_t at = chunk_heads_.size();
        http::append_chunk_header(chunk_heads_, spans[i].size());
        out_.push_back(asio::buffer(chunk_heads_.data() + at, chunk_heads_.size() - at));
      }
      out_.push_back(asio::buffer(spans[i]));
      if (chunked) out_.push_back(asio::buffer(http::chunk_crlf));
    }
    if (last && chunked) out_.push_back(asio::buffer(http::last_chunk));
    if (!out_.empty()) {
      deadline_.set(within_total(w_.clock->now() + timeouts_.idle));
      auto [ec, n] = co_await link_.write(out_);
      if (ec) {
        // The backend may have answered early and closed; its answer is read next.
        client.close_after_response();
        co_return outcome{};
      }
    }
    if (last) break;
  }
  request_complete_ = true;
  co_return outcome{};
}

// ---- the response head -------------------------------------------------------------------------

asio::awaitable<outcome> attempt::read_head(bool replayable) {
  const auto& cfg = *cfg_;
  const auto& info = *ep_->info;
  auto& em = *ep_->metrics;
  auto count = [&](metrics::upstream_error e) { em.errors[static_cast<int>(e)].inc(); };
  http::head_limits limits{cfg.limits.max_header_bytes, cfg.limits.max_headers};
  while (true) {
    std::size_t scanned = 0;
    std::size_t head_len = http::find_head_end(buffered());
    while (head_len == 0) {
      if (end_ - begin_ > cfg.limits.max_header_bytes) break;
      scanned = end_ - begin_;
      // The response head has its own deadline, counted from the request sent.
      auto n = co_await read_more(within_total(sent_at_ + timeouts_.first_byte));
      if (n == 0) break;
      head_len = http::find_head_end(buffered(), scanned);
    }
    if (head_len == 0) {
      bool got_nothing = end_ == 0;
      if (abandoned_) co_return fail(outcome_kind::abandoned, "another attempt answered first");
      if (client_->client_gone())
        co_return fail(outcome_kind::client_gone,
                       "client went away while waiting for the response");
      if (deadline_.expired()) {
        count(metrics::upstream_error::timeout);
        co_return fail(outcome_kind::response_timeout,
                       common::cat("upstream ", info.address, " did not respond in time"));
      }
      // A pooled connection that closes after taking the whole request: the backend may have
      // read it and died (pooled connections idle past a second are checked before reuse, so
      // a keep-alive close is unlikely). Sent again only when repeating it is harmless by its
      // method (RFC 9110 9.2.2); a POST is the route's call (retries.on: reset_before_response).
      if (got_nothing && reused_ && replayable && http::idempotent(method_))
        co_return fail(outcome_kind::stale_connection, "pooled upstream connection was closed");
      // A new TLS connection the server refused after the handshake (TLS 1.3: the gateway's
      // client certificate): a connect failure, as a certificate that does not verify is; the
      // server never read the request.
      if (got_nothing && !reused_) {
        if (auto refused = link_.take_tls_refusal(); !refused.empty())
          co_return connect_failed(
              false, common::cat("TLS connection refused (", refused, ")"),
              common::cat("upstream ", info.address, " refused the TLS connection (", refused, ")"));
      }
      count(got_nothing ? metrics::upstream_error::reset : metrics::upstream_error::protocol);
      if (got_nothing)
        co_return fail(
            outcome_kind::reset_before_response,
            common::cat("upstream ", info.address, " closed the connection without a response"));
      co_return fail(
          outcome_kind::bad_response,
          common::cat("upstream ", info.address, " sent an oversized or incomplete response head"));
    }
    http::parse_error perr{};
    auto st = http::parse_response(buffered(), limits, buf_->fields, method_, resp_, perr);
    if (st != http::parse_status::complete) {
      count(metrics::upstream_error::protocol);
      co_return fail(outcome_kind::bad_response,
                     common::cat("upstream ", info.address,
                                 " sent a malformed response: ", http::describe(perr)));
    }
    if (resp_.status >= 200) {
      consume(head_len);
      pinned_ = begin_;  // what resp_ points into: kept until release_head()
      break;
    }
    consume(head_len);  // interim 1xx (100 Continue was answered by the gateway): not forwarded
  }
  w_.metrics.cluster(info.cluster)
      .first_byte.observe(common::seconds_between(sent_at_, w_.clock->now()));
  head_arrived();
  outcome o;
  o.status = resp_.status;
  co_return o;
}

// Holds the response until its body's first byte (a stream's first token) is here, so a
// backend that answers the head at once and then stalls still gets a clean 504 (or a retry),
// never a response cut after its head.
asio::awaitable<outcome> attempt::await_body() {
  const auto& info = *ep_->info;
  outcome o;
  o.status = resp_.status;
  bool empty = resp_.body == http::body_kind::none ||
               (resp_.body == http::body_kind::content_length && resp_.content_length == 0);
  if (empty) co_return o;
  // A chunked body is read as far as a payload byte (or its end): a malformed chunk line must be
  // a 502 while the head can still be one, not a reply cut short after a 200.
  const bool chunked = resp_.body == http::body_kind::chunked;
  std::string_view why;
  auto ready = [&] {
    if (chunked) return scan_first_chunk(buffered(), why);
    return buffered().empty() ? first_chunk::need_more : first_chunk::ready;
  };
  auto r = ready();
  while (r == first_chunk::need_more) {
    auto n = co_await read_more(within_total(sent_at_ + timeouts_.first_byte));
    if (n == 0) break;
    r = ready();
  }
  if (r == first_chunk::malformed) {
    ep_->metrics->errors[static_cast<int>(metrics::upstream_error::protocol)].inc();
    co_return fail(outcome_kind::bad_response,
                   common::cat("upstream ", info.address, " sent a malformed chunked body: ", why));
  }
  if (r == first_chunk::ready) co_return o;
  if (abandoned_) co_return fail(outcome_kind::abandoned, "another attempt answered first");
  if (client_->client_gone())
    co_return fail(outcome_kind::client_gone, "client went away while waiting for the response");
  auto& em = *ep_->metrics;
  if (deadline_.expired()) {
    em.errors[static_cast<int>(metrics::upstream_error::timeout)].inc();
    co_return fail(outcome_kind::response_timeout,
                   past_total()
                       ? std::string("the request's deadline passed before the response")
                       : common::cat("upstream ", info.address, " sent no response body in time"));
  }
  // A close-delimited body may be empty; any other framing owed bytes.
  if (resp_.body == http::body_kind::until_close) co_return o;
  em.errors[static_cast<int>(metrics::upstream_error::reset)].inc();
  co_return fail(outcome_kind::reset_before_response,
                 common::cat("upstream ", info.address, " closed the connection after the head"));
}

}  // namespace meridian::proxy
