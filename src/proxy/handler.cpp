#include "proxy/tenant_gate.hpp"
#include "proxy/handler.hpp"

#include <algorithm>
#include <charconv>
#include <optional>

#include "meridian/common/log.hpp"
#include "meridian/config/units.hpp"
#include "meridian/http/headers.hpp"
#include "meridian/proxy/retry_policy.hpp"
#include "meridian/routing/prefix.hpp"
#include "proxy/admit.hpp"
#include "proxy/continuation.hpp"
#include "proxy/dispatch.hpp"
#include "proxy/hedge.hpp"
#include "proxy/grpc.hpp"
#include "proxy/model_routing.hpp"
#include "proxy/relay.hpp"
#include "proxy/stripe.hpp"

namespace meridian::proxy {

namespace asio = boost::asio;
using common::error_kind;
using common::outcome;
using common::outcome_kind;
using metrics::reject_reason;

namespace {

// The access log's flag for a forward that failed before the response.
std::uint16_t flag_of(outcome_kind k) {
  switch (k) {
    case outcome_kind::client_gone:
      return flag_client_gone;
    case outcome_kind::bad_request_body:
    case outcome_kind::request_body_too_large:
    case outcome_kind::request_body_timeout:
      return flag_bad_request;
    case outcome_kind::connect_failed:
    case outcome_kind::connect_timeout:
      return flag_connect_failure;
    case outcome_kind::pool_exhausted:
      return flag_overflow;
    case outcome_kind::response_timeout:
      return flag_upstream_timeout;
    default:
      return flag_upstream_reset;
  }
}

outcome bad_body(std::string_view why) {
  outcome o;
  o.kind = outcome_kind::bad_request_body;
  o.message = std::string(why);
  return o;
}

// ---- serve -------------------------------------------------------------------------------------

// "30s", "500ms", or a bare number of seconds ("2.5"); nullopt unless positive and finite.
std::optional<common::duration> client_timeout(std::string_view v) {
  if (auto d = config::parse_duration(v)) {
    if (*d > common::duration::zero()) return *d;
    return std::nullopt;
  }
  double s = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), s);
  if (ec != std::errc{} || end != v.data() + v.size() || !(s > 0) || s > 1e6) return std::nullopt;
  return std::chrono::duration_cast<common::duration>(std::chrono::duration<double>(s));
}

// The request's overall deadline: the route's total timeout, shortened by the client's own
// x-request-timeout. False when the client has been answered (a malformed header).
asio::awaitable<bool> set_deadline(request& r) {
  auto& ctx = r.ctx;
  const auto& t = r.cfg().routes[*ctx.route].timeouts;
  if (t.total > common::duration::zero()) ctx.deadline = r.ex.request_start() + t.total;
  auto v = r.ex.head().find("x-request-timeout");
  if (v.empty()) co_return true;
  auto d = client_timeout(v);
  if (!d) {
    r.w.metrics.rejected(reject_reason::bad_request).inc();
    co_await r.ex.reply_error(
        error_kind::bad_request,
        common::cat("x-request-timeout: invalid value '", v, "' (write e.g. 30s, 500ms or 2.5)"));
    co_return false;
  }
  ctx.deadline = std::min(ctx.deadline, r.ex.request_start() + *d);
  co_return true;
}

// Storage: what the pick weighs, the bytes the request is expected to move, and whether it writes.
void storage_input(const request& r, routing::pick_input& in) {
  const auto& ctx = r.ctx;
  const auto& head = r.ex.head();
  auto known = r.w.sizes().find(object_sizes::key_of(ctx.cluster, head.host, r.ex.path()));
  std::optional<std::uint64_t> body;
  if (head.body == http::body_kind::content_length) body = head.content_length;
  if (head.body == http::body_kind::none) body = 0;
  in.bytes = expected_bytes(r.ex.method(), head.find("range"), body, known);
  in.write = r.ex.method() == "PUT" || r.ex.method() == "POST";
}

// Storage: what the response says of the object's size.
void learn_size(const request& r) {
  r.w.sizes().learn(object_sizes::key_of(r.ctx.cluster, r.ex.head().host, r.ex.path()),
                    r.ex.method(), r.at->response());
}

// The request's candidates, best first, from what the pick weighs of it (filled into `in`).
routing::candidates pick_for(request& r, routing::pick_input& in) {
  auto& ctx = r.ctx;
  auto& cs = r.w.ups.cluster(ctx.cluster);
  const auto& cluster = r.cfg().clusters[ctx.cluster];
  in.answer_tokens = cs.answer_tokens;
  if (cluster.prefix_affinity.enabled) prefix_input(r, cluster.prefix_affinity, in);
  if (cluster.kind == config::cluster_kind::storage) storage_input(r, in);
  auto picks = r.w.balancers[ctx.cluster]->pick(cs.stats_view, in);
  if (picks.prompt_blocks > 0 && !picks.empty()) {
    double held = picks.uncached[0] < 0 ? 0 : picks.prompt_blocks - picks.uncached[0];
    r.w.metrics.cluster(ctx.cluster)
        .prefix.observe(picks.prefix_indexed, held / picks.prompt_blocks,
                        static_cast<int>(picks.prefix_spill));
  }
  return picks;
}

// A try of candidate k in r.at. Not a coroutine: the try's spec lives in the attempt's frame, not
// in forward()'s, which stays small enough for Asio to recycle (frames over ~1 KiB are
// allocated anew every time).
asio::awaitable<outcome> try_candidate(request& r, const routing::candidates& picks,
                                       const routing::pick_input& in, std::size_t k, body_tap* tap,
                                       bool may_reuse) {
  auto t = dispatch(r, picks, in, k, false);
  t.tap = tap;
  t.may_reuse = may_reuse;
  return r.at->run(std::move(t), r.ex);
}

// Tries the candidates in order as the retry policy allows, the first one raced against a hedge
// when the route hedges; an ok outcome leaves r.at ready for the relay.
asio::awaitable<outcome> forward(request& r) {
  auto& ctx = r.ctx;
  routing::pick_input in{r.w.rng, r.w.clock->now(),
                         r.guard.routed ? std::string_view(*r.guard.routed) : ""};
  auto picks = pick_for(r, in);
  const bool storage = r.cfg().clusters[ctx.cluster].kind == config::cluster_kind::storage;
  const auto& route = r.cfg().routes[*ctx.route];
  auto& cm = r.w.metrics.cluster(ctx.cluster);
  auto& budget = r.w.budgets[ctx.cluster];
  budget.on_request(in.now);
  auto& hedges = r.w.hedges[*ctx.route];
  if (hedges.enabled()) hedges.on_request(in.now);
  retry_policy policy(route.retries, &budget);
  std::size_t k = 0;
  bool may_reuse = true;
  body_tap* tap = ctx.model_routed ? &r.guard : nullptr;
  ctx.upstream_start = r.w.clock->now();
  // Both tries of a race send the body from the buffer: it is checked once, before.
  bool hedge = hedges.enabled() && picks.size() > 1 && r.ex.body().complete();
  if (hedge && tap) {
    if (!attempt::check_whole_body(r.ex, *tap)) co_return bad_body(tap->why());
    tap = nullptr;
  }
  while (true) {
    auto hedge_at = hedge && k == 0 ? hedges.hedge_at(r.w.clock->now()) : std::nullopt;
    outcome o;
    if (hedge_at && *hedge_at < ctx.deadline) {
      auto raced = co_await race(r, picks, in, k, *hedge_at, hedges);
      o = std::move(raced.outcome);
      k = raced.last;
      if (raced.hedge_won) ctx.flags |= flag_hedge_won;
      ctx.endpoint = r.at->endpoint();
    } else {
      o = co_await try_candidate(r, picks, in, k, tap, may_reuse);
    }
    if (hedges.enabled() && o.ok() && o.status < 500)
      hedges.observe(common::seconds_between(r.at->picked_at(), r.w.clock->now()));
    // A response is kept unless it is a 503 the route retries elsewhere. A write to storage is
    // tried again only when it provably never reached its endpoint: its outcome is the backend's.
    bool resendable = r.at->body_held() && !in.write;
    auto action = o.ok() && o.status != 503
                      ? retry_action::finish
                      : policy.next(o, k + 1 < picks.size(), resendable, r.w.clock->now());
    if (action != retry_action::finish && r.w.clock->now() >= ctx.deadline)
      action = retry_action::finish;  // no time left for another try
    if (policy.budget_refused()) cm.retry_budget_exhausted.inc();
    if (action == retry_action::finish) {
      if (o.ok() && r.at->body_held()) r.ex.consume_body();
      if (o.ok() && storage) learn_size(r);
      co_return o;
    }
    if (o.ok()) r.at->finish(false);  // the 503 is dropped, its connection closed
    if (action == retry_action::same_endpoint_fresh) {
      may_reuse = false;
      continue;
    }
    cm.retries[static_cast<int>(*policy.reason())].inc();
    ++k;
    may_reuse = true;
  }
}

// What the client sees of a failed forward.
asio::awaitable<void> report(request& r, const outcome& o) {
  auto& ctx = r.ctx;
  auto& rm = ctx.route ? r.w.metrics.route(*ctx.route) : r.w.metrics.unrouted();
  ctx.flags |= flag_of(o.kind);
  switch (o.kind) {
    case outcome_kind::client_gone:
      rm.cancelled_request.inc();
      r.ex.set_note(o.message);
      co_return;
    case outcome_kind::bad_request_body:
      r.w.metrics.rejected(reject_reason::bad_request).inc();
      co_await r.ex.reply_error(error_kind::bad_request, o.message);
      co_return;
    case outcome_kind::request_body_too_large:
      co_await reply_body_error(r, http::body_result::too_large);
      co_return;
    case outcome_kind::request_body_timeout:
      co_await reply_body_error(r, http::body_result::timeout);
      co_return;
    default:
      co_await r.ex.reply_error(o.client_error(), o.message);
  }
}

// Serves a GET the cluster stripes (stripe.hpp): served when the client has been served, cut short
// or has left; answered when r.at holds the first part's answer to relay as it is; not_served when
// it is to be served whole.
asio::awaitable<stripe_result> try_stripe(request& r) {
  if (!stripes(r)) co_return stripe_result::not_served;
  auto got = co_await stripe_get(r);
  const auto& o = got.outcome;
  switch (got.result) {
    case stripe_result::served:
      if (!o.ok()) {
        r.ex.set_note(o.message);
        r.ctx.flags |= o.kind == outcome_kind::client_gone ? flag_client_gone : flag_stream_broken;
      }
      break;
    case stripe_result::answered:
      learn_size(r);
      break;
    case stripe_result::not_served:
      common::log(common::log_level::info, "proxy", "request ", r.ex.request_id(),
                  ": not striped (", o.message, "); fetched whole");
      break;
  }
  co_return got.result;
}

// After the response: its token counts for the log, and why it broke off, if it did.
void conclude(request& r, const outcome& o) {
  auto& ctx = r.ctx;
  if (auto p = r.at->stream().prompt_tokens()) ctx.prompt_tokens = static_cast<std::int64_t>(*p);
  if (auto n = r.at->stream().completion_tokens())
    ctx.completion_tokens = static_cast<std::int64_t>(*n);
  if (r.at->stream().sse()) ctx.stream_events = static_cast<std::int64_t>(r.at->stream().events());
  if (o.ok()) return;
  r.ex.set_note(o.message);
  ctx.flags |= o.kind == outcome_kind::client_gone ? flag_client_gone : flag_stream_broken;
  if (o.kind == outcome_kind::client_gone)
    r.w.metrics.route(*ctx.route).cancelled_response.inc();
  else
    r.at->count_error(o.kind == outcome_kind::stalled_response ? metrics::upstream_error::timeout
                                                               : metrics::upstream_error::reset);
}

}  // namespace

// Serves one request: route -> deadline -> model -> admission -> forward (or stripe) -> relay,
// then counts and logs it (done_guard, at whichever co_return).
asio::awaitable<void> handler::serve_request(std::unique_ptr<request_scratch> s) {
  done_guard done{*this, s};
  auto& r = *s->live;
  auto& ctx = r.ctx;
  auto& w = r.w;
  if (w.log.enabled()) {
    ctx.user_agent.assign(r.ex.head().find("user-agent"));
    ctx.host.assign(r.ex.head().host);
  }
  bool known = co_await identify_tenant(r);
  if (!known) co_return;
  auto m = ctx.snap->routes.match(view_of(r.ex), std::nullopt);
  if (m.outcome == routing::match_outcome::need_model) {
    bool read = false;
    if (is_grpc(r.ex))
      read = co_await route_by_grpc_model(r, m);
    else
      read = co_await route_by_model(r, m);
    if (!read) co_return;
  }
  if (m.outcome != routing::match_outcome::matched) {
    w.metrics.rejected(reject_reason::no_route).inc();
    ctx.flags |= flag_no_route;
    std::string msg = common::cat("no route for ", r.ex.method(), ' ', r.ex.path());
    co_await r.ex.reply_error(error_kind::not_found, msg);
    co_return;
  }
  ctx.route = m.route;
  ctx.cluster = ctx.snap->routes.route(m.route).cluster_index;
  bool capped = co_await refuse_over_cap(r);
  if (capped) co_return;
  bool timely = co_await set_deadline(r);
  if (!timely) co_return;
  const auto& cluster_cfg = r.cfg().clusters[ctx.cluster];
  if (cluster_cfg.kind == config::cluster_kind::grpc_inference) {
    co_await serve_grpc(r);
    co_return;
  }
  if (cluster_cfg.models.enabled || cluster_cfg.prefix_affinity.enabled) {
    bool go_on = co_await check_model(r);
    if (!go_on) co_return;
  }
  bool allowed = co_await admit_tenant(r, false);
  if (!allowed) co_return;
  if (r.guard.routed && w.log.enabled()) ctx.model = *r.guard.routed;
  const auto& head = r.ex.head();
  http::out_framing framing = http::out_framing::none;
  if (head.body == http::body_kind::content_length)
    framing = http::out_framing::content_length;
  else if (head.body == http::body_kind::chunked)
    framing = http::out_framing::chunked;
  else if (head.method == "POST" || head.method == "PUT" || head.method == "PATCH")
    framing = http::out_framing::content_length;  // explicit zero-length body
  http::build_upstream_request(r.head_out, head,
                               r.forward(), framing,
                               head.content_length);
  // No backend connection for a client that has not sent enough body to be worth one.
  std::size_t prebuffer = r.cfg().limits.body_prebuffer_bytes;
  if (!r.ex.body_buffered(prebuffer)) {
    auto got = co_await r.ex.buffer_body(prebuffer);
    if (got != http::body_result::ok) {
      if (got == http::body_result::client_gone) w.metrics.route(m.route).cancelled_request.inc();
      ctx.flags |= got == http::body_result::client_gone ? flag_client_gone : flag_bad_request;
      co_await reply_body_error(r, got);
      co_return;
    }
  }
  std::optional<admission_slot> slot;
  bool admitted = co_await admit(r, slot);
  if (!admitted) co_return;
  auto striped = co_await try_stripe(r);
  if (striped == stripe_result::served) co_return;
  bool resumable = prepare_resume(r);
  r.ex.watch_client(r.at.get());
  outcome o;
  if (striped == stripe_result::answered)
    o.status = r.at->response().status;
  else
    o = co_await forward(r);
  if (!o.ok()) {
    r.ex.unwatch_client();
    co_await report(r, o);
    co_return;
  }
  ctx.first_byte = w.clock->now();
  payload_hooks hooks{resumable ? &r.resume : nullptr,
                      prepare_object_resume(r) ? &r.object : nullptr};
  o = co_await relay(*r.at, r.ex, hooks);
  o = co_await after_relay(r, std::move(o));
  r.ex.unwatch_client();
  conclude(r, o);
}
// Not a coroutine: the request's own coroutine (serve_request) is the one the codec awaits, one
// frame less per request (Asio recycles only a couple of frames per thread).
asio::awaitable<void> handler::serve(http::exchange& ex) {
  auto s = scratch_.take(w_);
  s->live.emplace(ex, w_, *s);
  return serve_request(std::move(s));
}

handler::done_guard::~done_guard() {
  // A frame destroyed by the worker's shutdown (its I/O released) is neither counted nor kept.
  if (h.scratch_.closed()) return;
  settle_tenant(s->live->ctx, s->live->ex.status(), h.w_.clock->now());
  h.record(s->live->ex, &s->live->ctx);
  h.scratch_.give(std::move(s));
}

void handler::rejected(http::exchange& ex) {
  record(ex, nullptr);
}

// ---- the request's figures and log line --------------------------------------------------------

void handler::record(const http::exchange& ex, const request_context* served) {
  auto now = w_.clock->now();
  static const request_context empty;
  const auto& ctx = served ? *served : empty;
  double dur = common::seconds_between(ex.request_start(), now);
  auto& rm = ctx.route ? w_.metrics.route(*ctx.route) : w_.metrics.unrouted();
  rm.requests[metrics::status_index(ex.status())].inc();
  rm.duration.observe(dur);
  w_.metrics.bytes_in().inc(ex.bytes_in());
  w_.metrics.bytes_out().inc(ex.bytes_out());
  if (ctx.route) {
    auto& cm = w_.metrics.cluster(ctx.cluster);
    cm.bytes[0].inc(ex.bytes_in());
    cm.bytes[1].inc(ex.bytes_out());
  }
  if (!w_.log.enabled()) return;
  bool upstream = ctx.endpoint != nullptr;
  const auto* routes = ctx.snap ? &ctx.snap->cfg->routes : nullptr;
  access_record r;
  r.request_id = ex.request_id();
  r.method = ex.method();
  r.path = ex.path();
  r.route = ctx.route ? std::string_view((*routes)[*ctx.route].name) : std::string_view{};
  r.upstream = upstream ? std::string_view(ctx.endpoint->info->address) : std::string_view{};
  r.status = ex.status();
  r.bytes_in = ex.bytes_in();
  r.bytes_out = ex.bytes_out();
  r.duration_s = dur;
  r.upstream_s = upstream ? common::seconds_between(ctx.upstream_start, now) : -1;
  r.ttfb_s = ctx.first_byte != common::time_point{}
                 ? common::seconds_between(ex.request_start(), ctx.first_byte)
                 : -1;
  r.error = ex.note();
  r.client = ex.client_ip();
  r.protocol = ex.protocol();
  r.tls = ex.tls_version();
  r.tls_client = ex.client_subject();
  r.user_agent = ctx.user_agent;
  r.host = ctx.host;
  r.cluster = ctx.route ? std::string_view((*routes)[*ctx.route].cluster) : std::string_view{};
  r.model = ctx.model;
  r.tenant = ctx.tenant ? std::string_view(ctx.tenant->spec.name) : std::string_view{};
  r.grpc_status = ctx.grpc_status;
  r.prompt_tokens = ctx.prompt_tokens;
  r.completion_tokens = ctx.completion_tokens;
  r.attempts = ctx.attempts;
  r.flags = ctx.flags | (ctx.attempts > 1 ? flag_retried : 0);
  w_.log.record(r);
}

}  // namespace meridian::proxy
