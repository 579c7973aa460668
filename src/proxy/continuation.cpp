#include "proxy/continuation.hpp"

#include "meridian/common/log.hpp"
#include "meridian/http/headers.hpp"
#include "proxy/relay.hpp"

namespace meridian::proxy {

namespace asio = boost::asio;
using common::outcome;
using common::outcome_kind;

bool prepare_resume(http::connection& c, const worker_context& w, conn_state& st) {
  st.resume.reset();
  const auto& ctx = st.ctx;
  if (!ctx.route || w.snap->cfg->routes[*ctx.route].resume.attempts == 0) return false;
  if (c.head().body != http::body_kind::content_length || !c.body().complete()) return false;
  auto path = c.path();
  bool chat = path.ends_with("/chat/completions");
  if (!chat && !path.ends_with("/completions")) return false;
  return st.resume.begin(c.buffered_body(), chat);
}

namespace {
bool cut(const outcome& o) {
  return o.kind == outcome_kind::reset_during_response || o.kind == outcome_kind::stalled_response;
}

// One continuation: the request with the text so far, to the best candidate other than the
// endpoint that cut the stream; its events follow in the client's response. A failure before
// any of its events were relayed leaves the stream where it was.
asio::awaitable<outcome> continue_stream(http::connection& c, worker_context& w, conn_state& st) {
  auto& ctx = st.ctx;
  auto& cs = w.ups.cluster(ctx.cluster);
  auto failed = st.at->endpoint();
  routing::pick_input in{w.rng, w.clock->now(),
                         st.guard.routed ? std::string_view(*st.guard.routed) : ""};
  auto picks = w.balancers[ctx.cluster]->pick(cs.stats_view, in);
  upstream::endpoint_ref ep;
  for (std::size_t i = 0; i < picks.size() && !ep; ++i)
    if (cs.endpoints[picks[i]] != failed) ep = cs.endpoints[picks[i]];
  if (!ep) {
    outcome o;
    o.kind = outcome_kind::reset_during_response;
    o.message = "upstream failed during the response, and no other endpoint can continue it";
    co_return o;
  }
  ep->metrics->decisions[static_cast<int>(metrics::decision::retry)].inc();
  st.resume_body = st.resume.continuation();
  http::build_upstream_request(st.resume_head, c.head(), {c.client_ip(), "http", c.request_id()},
                               http::out_framing::content_length, st.resume_body.size());
  auto& at = *st.at;
  at.set_prefix(-1, 0);
  at.set_deadlines(ctx.snap->cfg->routes[*ctx.route].timeouts, ctx.deadline);
  at.set_route(nullptr, c.request_start());  // the request's first token was counted already
  at.set_body(st.resume_body);
  ++ctx.attempts;
  ctx.endpoint = ep;
  auto o = co_await at.run(std::move(ep), true, c, st.resume_head, nullptr);
  if (!o.ok()) co_return o;
  if (o.status != 200 || !at.stream().sse()) {
    at.finish(false);
    o.kind = outcome_kind::bad_response;
    o.message = common::cat("the stream's continuation was answered ", o.status,
                            at.stream().sse() ? "" : " without an event stream");
    co_return o;
  }
  co_return co_await relay_continuation(at, c);
}
}  // namespace

asio::awaitable<outcome> after_relay(http::connection& c, worker_context& w, conn_state& st,
                                     outcome o) {
  if (!cut(o)) co_return o;
  auto& ctx = st.ctx;
  auto& cm = w.metrics.cluster(ctx.cluster);
  unsigned left = st.resume.active() ? ctx.snap->cfg->routes[*ctx.route].resume.attempts : 0;
  bool tell = error_event_fits(*st.at);
  while (left > 0 && st.resume.resumable() && !st.at->past_total() && !c.client_gone()) {
    --left;
    auto before = c.bytes_out();
    auto next = co_await continue_stream(c, w, st);
    bool relayed = c.bytes_out() > before;
    cm.resumes[next.ok() || relayed ? 0 : 1].inc();
    if (relayed) ctx.flags |= flag_resumed;
    common::log(common::log_level::info, "proxy", "request ", c.request_id(), ": stream resumed",
                next.ok() ? "" : ", not finished: ", next.message);
    if (next.ok() || next.kind == outcome_kind::client_gone) co_return next;
    if (relayed) {
      tell = error_event_fits(*st.at);
      o = std::move(next);
    } else {
      o.message = common::cat(o.message, "; resume failed: ", next.message);
    }
  }
  co_await end_broken_stream(*st.at, c, o, tell);
  co_return o;
}

}  // namespace meridian::proxy
