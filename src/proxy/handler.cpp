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
#include "proxy/context.hpp"
#include "proxy/continuation.hpp"
#include "proxy/hedge.hpp"
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

conn_state& state_of(http::connection& c, worker_context& w) {
  auto& s = c.state();
  if (!s) s = std::make_unique<conn_state>(w);
  return static_cast<conn_state&>(*s);
}

metrics::decision decision_of(routing::pick_reason r) {
  switch (r) {
    case routing::pick_reason::round_robin:
      return metrics::decision::round_robin;
    case routing::pick_reason::least_request:
      return metrics::decision::least_request;
    case routing::pick_reason::panic:
      return metrics::decision::panic;
    default:
      return metrics::decision::score;
  }
}

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
asio::awaitable<bool> set_deadline(http::connection& c, worker_context& w, request_context& ctx) {
  const auto& t = ctx.snap->cfg->routes[*ctx.route].timeouts;
  if (t.total > common::duration::zero()) ctx.deadline = c.request_start() + t.total;
  auto v = c.head().find("x-request-timeout");
  if (v.empty()) co_return true;
  auto d = client_timeout(v);
  if (!d) {
    w.metrics.rejected(reject_reason::bad_request).inc();
    co_await c.reply_error(
        error_kind::bad_request,
        common::cat("x-request-timeout: invalid value '", v, "' (write e.g. 30s, 500ms or 2.5)"));
    co_return false;
  }
  ctx.deadline = std::min(ctx.deadline, c.request_start() + *d);
  co_return true;
}

// Storage: what the pick weighs, the bytes the request is expected to move, and whether it writes.
void storage_input(const http::connection& c, worker_context& w, const request_context& ctx,
                   routing::pick_input& in) {
  const auto& head = c.head();
  auto known = w.sizes().find(object_sizes::key_of(ctx.cluster, head.host, c.path()));
  std::optional<std::uint64_t> body;
  if (head.body == http::body_kind::content_length) body = head.content_length;
  if (head.body == http::body_kind::none) body = 0;
  in.bytes = expected_bytes(c.method(), head.find("range"), body, known);
  in.write = c.method() == "PUT" || c.method() == "POST";
}

// Storage: what the response says of the object's size.
void learn_size(const http::connection& c, worker_context& w, const conn_state& st) {
  w.sizes().learn(object_sizes::key_of(st.ctx.cluster, c.head().host, c.path()), c.method(),
                  st.at->response());
}

// The request's candidates, best first, from what the pick weighs of it (filled into `in`).
routing::candidates pick_for(const http::connection& c, worker_context& w, conn_state& st,
                             routing::pick_input& in) {
  auto& ctx = st.ctx;
  auto& cs = w.ups.cluster(ctx.cluster);
  const auto& cluster = w.snap->cfg->clusters[ctx.cluster];
  in.answer_tokens = cs.answer_tokens;
  if (cluster.prefix_affinity.enabled) prefix_input(c, w, st, cluster.prefix_affinity, in);
  if (cluster.kind == config::cluster_kind::storage) storage_input(c, w, ctx, in);
  auto picks = w.balancers[ctx.cluster]->pick(cs.stats_view, in);
  if (picks.prompt_blocks > 0 && !picks.empty()) {
    double held = picks.uncached[0] < 0 ? 0 : picks.prompt_blocks - picks.uncached[0];
    w.metrics.cluster(ctx.cluster)
        .prefix.observe(picks.prefix_indexed, held / picks.prompt_blocks,
                        static_cast<int>(picks.prefix_spill));
  }
  return picks;
}

// Tries the candidates in order as the retry policy allows, the first one raced against a hedge
// when the route hedges; an ok outcome leaves st.at ready for the relay.
asio::awaitable<outcome> forward(http::connection& c, worker_context& w, conn_state& st) {
  auto& ctx = st.ctx;
  auto& cs = w.ups.cluster(ctx.cluster);
  routing::pick_input in{w.rng, w.clock->now(),
                         st.guard.routed ? std::string_view(*st.guard.routed) : ""};
  auto picks = pick_for(c, w, st, in);
  auto& bal = *w.balancers[ctx.cluster];
  const bool storage = w.snap->cfg->clusters[ctx.cluster].kind == config::cluster_kind::storage;
  const auto& route = ctx.snap->cfg->routes[*ctx.route];
  auto& cm = w.metrics.cluster(ctx.cluster);
  auto& budget = w.budgets[ctx.cluster];
  budget.on_request(in.now);
  auto& hedges = w.hedges[*ctx.route];
  if (hedges.enabled()) hedges.on_request(in.now);
  retry_policy policy(route.retries, &budget);
  std::size_t k = 0;
  bool may_reuse = true;
  body_tap* tap = ctx.model_routed ? &st.guard : nullptr;
  ctx.upstream_start = w.clock->now();
  // A plain lambda: only a hedge race wraps it in a std::function (an allocation).
  auto start = [&](attempt& at, std::size_t i, bool hedge) {
    auto why = hedge   ? metrics::decision::hedge
               : i > 0 ? metrics::decision::retry
                       : decision_of(picks.reason);
    cs.endpoints[picks[i]]->metrics->decisions[static_cast<int>(why)].inc();
    bal.dispatched(picks[i], in);
    at.set_prefix(picks.uncached[i], static_cast<std::int32_t>(picks.prompt_blocks));
    at.set_deadlines(route.timeouts, ctx.deadline);
    at.set_route(&w.metrics.route(*ctx.route), c.request_start());
    at.set_transfer(in.bytes);
    ++ctx.attempts;
    return ctx.endpoint = cs.endpoints[picks[i]];
  };
  // Both tries of a race send the body from the buffer: it is checked once, before.
  bool hedge = hedges.enabled() && picks.size() > 1 && c.body().complete();
  if (hedge && tap) {
    if (!attempt::check_whole_body(c, *tap)) co_return bad_body(tap->why());
    tap = nullptr;
  }
  while (true) {
    auto hedge_at = hedge && k == 0 ? hedges.hedge_at(w.clock->now()) : std::nullopt;
    outcome o;
    if (hedge_at && *hedge_at < ctx.deadline) {
      start_try starter(start);
      auto r = co_await race(c, w, st, starter, k, k + 1 < picks.size(), *hedge_at, hedges, cm);
      o = std::move(r.outcome);
      k = r.last;
      if (r.hedge_won) ctx.flags |= flag_hedge_won;
      ctx.endpoint = st.at->endpoint();
    } else {
      auto ep = start(*st.at, k, false);
      o = co_await st.at->run(std::move(ep), may_reuse, c, st.head_out, tap);
    }
    if (hedges.enabled() && o.ok() && o.status < 500)
      hedges.observe(common::seconds_between(st.at->picked_at(), w.clock->now()));
    // A response is kept unless it is a 503 the route retries elsewhere. A write to storage is
    // tried again only when it provably never reached its endpoint: its outcome is the backend's.
    bool resendable = st.at->body_held() && !in.write;
    auto action = o.ok() && o.status != 503
                      ? retry_action::finish
                      : policy.next(o, k + 1 < picks.size(), resendable, w.clock->now());
    if (action != retry_action::finish && w.clock->now() >= ctx.deadline)
      action = retry_action::finish;  // no time left for another try
    if (policy.budget_refused()) cm.retry_budget_exhausted.inc();
    if (action == retry_action::finish) {
      if (o.ok() && st.at->body_held()) c.consume_body();
      if (o.ok() && storage) learn_size(c, w, st);
      co_return o;
    }
    if (o.ok()) st.at->finish(false);  // the 503 is dropped, its connection closed
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
asio::awaitable<void> report(http::connection& c, worker_context& w, request_context& ctx,
                             const outcome& o) {
  auto& rm = ctx.route ? w.metrics.route(*ctx.route) : w.metrics.unrouted();
  ctx.flags |= flag_of(o.kind);
  switch (o.kind) {
    case outcome_kind::client_gone:
      rm.cancelled_request.inc();
      c.set_note(o.message);
      co_return;
    case outcome_kind::bad_request_body:
      w.metrics.rejected(reject_reason::bad_request).inc();
      co_await c.reply_error(error_kind::bad_request, o.message);
      co_return;
    case outcome_kind::request_body_too_large:
      co_await reply_body_error(c, w, http::body_result::too_large);
      co_return;
    case outcome_kind::request_body_timeout:
      co_await reply_body_error(c, w, http::body_result::timeout);
      co_return;
    default:
      co_await c.reply_error(o.client_error(), o.message);
  }
}
// Serves a GET the cluster stripes (stripe.hpp): served when the client has been served, cut short
// or has left; answered when st.at holds the first part's answer to relay as it is; not_served when
// it is to be served whole.
asio::awaitable<stripe_result> try_stripe(http::connection& c, worker_context& w, conn_state& st) {
  if (!stripes(c, w, st.ctx)) co_return stripe_result::not_served;
  auto r = co_await stripe_get(c, w, st);
  const auto& o = r.outcome;
  switch (r.result) {
    case stripe_result::served:
      if (!o.ok()) {
        c.set_note(o.message);
        st.ctx.flags |= o.kind == outcome_kind::client_gone ? flag_client_gone : flag_stream_broken;
      }
      break;
    case stripe_result::answered:
      learn_size(c, w, st);
      break;
    case stripe_result::not_served:
      common::log(common::log_level::info, "proxy", "request ", c.request_id(), ": not striped (",
                  o.message, "); fetched whole");
      break;
  }
  co_return r.result;
}

// After the response: its token counts for the log, and why it broke off, if it did.
void conclude(http::connection& c, worker_context& w, conn_state& st, const outcome& o) {
  auto& ctx = st.ctx;
  if (auto p = st.at->stream().prompt_tokens()) ctx.prompt_tokens = static_cast<std::int64_t>(*p);
  if (auto n = st.at->stream().completion_tokens())
    ctx.completion_tokens = static_cast<std::int64_t>(*n);
  if (o.ok()) return;
  c.set_note(o.message);
  ctx.flags |= o.kind == outcome_kind::client_gone ? flag_client_gone : flag_stream_broken;
  if (o.kind == outcome_kind::client_gone)
    w.metrics.route(*ctx.route).cancelled_response.inc();
  else
    st.at->count_error(o.kind == outcome_kind::stalled_response ? metrics::upstream_error::timeout
                                                                : metrics::upstream_error::reset);
}
}  // namespace

asio::awaitable<void> handler::serve(http::connection& c) {
  auto& st = state_of(c, w_);
  auto& ctx = st.ctx;
  ctx.reset();
  st.guard.reset();
  ctx.snap = w_.snap;
  if (w_.log.enabled()) {
    ctx.user_agent.assign(c.head().find("user-agent"));
    ctx.host.assign(c.head().find("host"));
  }
  auto m = ctx.snap->routes.match(view_of(c.head()), std::nullopt);
  if (m.outcome == routing::match_outcome::need_model) {
    bool read = co_await route_by_model(c, w_, st, m);
    if (!read) co_return;
  }
  if (m.outcome != routing::match_outcome::matched) {
    w_.metrics.rejected(reject_reason::no_route).inc();
    ctx.flags |= flag_no_route;
    std::string msg = common::cat("no route for ", c.method(), ' ', c.path());
    co_await c.reply_error(error_kind::not_found, msg);
    co_return;
  }
  ctx.route = m.route;
  ctx.cluster = ctx.snap->routes.route(m.route).cluster_index;
  bool capped = co_await refuse_over_cap(c, w_, ctx);
  if (capped) co_return;
  bool timely = co_await set_deadline(c, w_, ctx);
  if (!timely) co_return;
  const auto& cluster_cfg = ctx.snap->cfg->clusters[ctx.cluster];
  if (cluster_cfg.models.enabled || cluster_cfg.prefix_affinity.enabled) {
    bool go_on = co_await check_model(c, w_, st);
    if (!go_on) co_return;
  }
  if (st.guard.routed && w_.log.enabled()) ctx.model = *st.guard.routed;
  const auto& head = c.head();
  http::out_framing framing = http::out_framing::none;
  if (head.body == http::body_kind::content_length)
    framing = http::out_framing::content_length;
  else if (head.body == http::body_kind::chunked)
    framing = http::out_framing::chunked;
  else if (head.method == "POST" || head.method == "PUT" || head.method == "PATCH")
    framing = http::out_framing::content_length;  // explicit zero-length body
  http::build_upstream_request(st.head_out, head, {c.client_ip(), "http", c.request_id()}, framing,
                               head.content_length);
  // No backend connection for a client that has not sent enough body to be worth one.
  std::size_t prebuffer = ctx.snap->cfg->limits.body_prebuffer_bytes;
  if (!c.body_buffered(prebuffer)) {
    auto r = co_await c.buffer_body(prebuffer);
    if (r != http::body_result::ok) {
      if (r == http::body_result::client_gone) w_.metrics.route(m.route).cancelled_request.inc();
      ctx.flags |= r == http::body_result::client_gone ? flag_client_gone : flag_bad_request;
      co_await reply_body_error(c, w_, r);
      co_return;
    }
  }
  std::optional<admission_slot> slot;
  bool admitted = co_await admit(c, w_, ctx, slot);
  if (!admitted) co_return;
  auto striped = co_await try_stripe(c, w_, st);
  if (striped == stripe_result::served) co_return;
  bool resumable = prepare_resume(c, w_, st);
  c.watch_client(st.at.get());
  outcome o;
  if (striped == stripe_result::answered)
    o.status = st.at->response().status;
  else
    o = co_await forward(c, w_, st);
  if (!o.ok()) {
    c.unwatch_client();
    co_await report(c, w_, ctx, o);
    co_return;
  }
  ctx.first_byte = w_.clock->now();
  st.at->set_resume(resumable ? &st.resume : nullptr);
  st.at->set_object(prepare_object_resume(w_, st, c.method()) ? &st.object : nullptr);
  o = co_await relay(*st.at, c, st.head_out);
  o = co_await after_relay(c, w_, st, std::move(o));
  c.unwatch_client();
  conclude(c, w_, st, o);
}

// ---- finished ----------------------------------------------------------------------------------

void handler::finished(http::connection& c) {
  auto now = w_.clock->now();
  static const request_context empty;
  auto* st = static_cast<conn_state*>(c.state().get());
  const auto& ctx = st ? st->ctx : empty;
  double dur = common::seconds_between(c.request_start(), now);
  auto& rm = ctx.route ? w_.metrics.route(*ctx.route) : w_.metrics.unrouted();
  rm.requests[metrics::status_index(c.status())].inc();
  rm.duration.observe(dur);
  w_.metrics.bytes_in().inc(c.bytes_in());
  w_.metrics.bytes_out().inc(c.bytes_out());
  if (ctx.route) {
    auto& cm = w_.metrics.cluster(ctx.cluster);
    cm.bytes[0].inc(c.bytes_in());
    cm.bytes[1].inc(c.bytes_out());
  }
  if (w_.log.enabled()) {
    bool upstream = ctx.endpoint != nullptr;
    access_record r;
    r.request_id = c.request_id();
    r.method = c.method();
    r.path = c.path();
    r.route =
        ctx.route ? std::string_view(ctx.snap->cfg->routes[*ctx.route].name) : std::string_view{};
    r.upstream = upstream ? std::string_view(ctx.endpoint->info->address) : std::string_view{};
    r.status = c.status();
    r.bytes_in = c.bytes_in();
    r.bytes_out = c.bytes_out();
    r.duration_s = dur;
    r.upstream_s = upstream ? common::seconds_between(ctx.upstream_start, now) : -1;
    r.ttfb_s = ctx.first_byte != common::time_point{}
                   ? common::seconds_between(c.request_start(), ctx.first_byte)
                   : -1;
    r.error = c.note();
    r.client = c.client_ip();
    r.user_agent = ctx.user_agent;
    r.host = ctx.host;
    r.cluster = ctx.route ? std::string_view(ctx.snap->cfg->routes[*ctx.route].cluster)
                          : std::string_view{};
    r.model = ctx.model;
    r.prompt_tokens = ctx.prompt_tokens;
    r.completion_tokens = ctx.completion_tokens;
    r.attempts = ctx.attempts;
    r.flags = ctx.flags | (ctx.attempts > 1 ? flag_retried : 0);
    w_.log.record(r);
  }
  if (st) st->ctx.reset();
}

}  // namespace meridian::proxy
