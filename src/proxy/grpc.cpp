#include "proxy/tenant_gate.hpp"
#include "proxy/grpc.hpp"

#include <charconv>

#include "meridian/common/log.hpp"
#include "meridian/proxy/retry_policy.hpp"
#include "meridian/routing/grpc_model.hpp"
#include "proxy/admit.hpp"
#include "proxy/grpc_call.hpp"
#include "proxy/model_routing.hpp"

namespace meridian::proxy {

namespace asio = boost::asio;
using common::error_kind;
using metrics::reject_reason;

bool is_grpc(const http::exchange& ex) {
  auto ct = ex.head().find("content-type");
  return ct.size() >= 16 && http::iequals(ct.substr(0, 16), "application/grpc");
}

namespace {
// Reads until the first message is whole (within limits.model_peek_bytes) and keeps its
// model_name in the request's model guard. False when the client has been answered.
asio::awaitable<bool> read_first_message(request& r) {
  std::size_t cap = r.cfg().limits.model_peek_bytes;
  std::size_t want = 5;
  while (true) {
    auto got = co_await r.ex.buffer_body(want);
    if (got != http::body_result::ok) {
      co_await reply_body_error(r, got);
      co_return false;
    }
    auto payload = buffered_payload(r.ex, cap + 5);
    auto m = routing::read_grpc_model(payload, cap);
    using st = routing::grpc_model_status;
    if (m.status == st::found) {
      r.guard.routed = std::string(m.name);
      co_return true;
    }
    if (m.status == st::absent) co_return true;
    if (m.status == st::incomplete && !r.ex.body().complete()) {
      std::size_t need =
          m.message_bytes + 5 > payload.size() ? m.message_bytes + 5 - payload.size() : 1;
      want = r.ex.buffered_body().size() + need;
      continue;
    }
    r.w.metrics.rejected(reject_reason::bad_request).inc();
    std::string_view why = m.status == st::incomplete ? "the request ended inside its first message"
                                                      : routing::describe(m.status);
    co_await r.ex.reply_error(error_kind::bad_request, why);
    co_return false;
  }
}

// grpc-timeout (gRPC over HTTP/2): up to 8 digits and a unit, H M S m u n.
std::optional<common::duration> grpc_timeout(std::string_view v) {
  if (v.size() < 2 || v.size() > 9) return std::nullopt;
  std::uint64_t n = 0;
  auto digits = v.substr(0, v.size() - 1);
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
  if (ec != std::errc{} || end != digits.data() + digits.size()) return std::nullopt;
  using namespace std::chrono;
  switch (v.back()) {
    case 'H':
      return duration_cast<common::duration>(hours(n));
    case 'M':
      return duration_cast<common::duration>(minutes(n));
    case 'S':
      return duration_cast<common::duration>(seconds(n));
    case 'm':
      return duration_cast<common::duration>(milliseconds(n));
    case 'u':
      return duration_cast<common::duration>(microseconds(n));
    case 'n':
      return duration_cast<common::duration>(nanoseconds(n));
    default:
      return std::nullopt;
  }
}

}  // namespace

asio::awaitable<bool> route_by_grpc_model(request& r, routing::match_result& m) {
  bool read = co_await read_first_message(r);
  if (!read) co_return false;
  std::string_view model = r.guard.routed ? std::string_view(*r.guard.routed) : "";
  m = r.ctx.snap->routes.match(view_of(r.ex), model);
  co_return true;
}

namespace {
// What serve_grpc checks before it calls anything: HTTP/2 and gRPC's content type, grpc-timeout
// into the deadline, the first message's model. False when the client has been answered.
asio::awaitable<bool> grpc_preamble(request& r) {
  auto& ctx = r.ctx;
  auto& w = r.w;
  if (r.ex.protocol() != "h2" || !is_grpc(r.ex)) {
    w.metrics.rejected(reject_reason::bad_request).inc();
    co_await r.ex.reply_error(error_kind::bad_request,
                              "this route serves gRPC: HTTP/2 and content-type application/grpc");
    co_return false;
  }
  if (auto v = r.ex.head().find("grpc-timeout"); !v.empty()) {
    auto d = grpc_timeout(v);
    if (!d) {
      w.metrics.rejected(reject_reason::bad_request).inc();
      auto why = common::cat("grpc-timeout: invalid value '", v, "'");
      co_await r.ex.reply_error(error_kind::bad_request, why);
      co_return false;
    }
    ctx.deadline = std::min(ctx.deadline, r.ex.request_start() + *d);
  }
  if (!r.guard.routed && r.ex.body().kind() != http::body_kind::none) {
    bool read = co_await read_first_message(r);
    if (!read) co_return false;
  }
  if (r.guard.routed) ctx.model = *r.guard.routed;
  co_return true;
}

// Whether the cluster may serve `model`: false only when every healthy endpoint has listed its
// models (RepositoryIndex / ModelReady) and none lists it. With no healthy endpoint at all the
// call goes on to find none (UNAVAILABLE: worth a retry, unlike NOT_FOUND).
bool healthy_endpoint_serves(const upstream::cluster_state& cs, std::string_view model) {
  bool any_healthy = false;
  for (const auto* s : cs.stats_view) {
    if (!s->healthy) continue;
    any_healthy = true;
    if (upstream::serves(s->probe.models.get(), model)) return true;
  }
  return !any_healthy;
}

// How a call to one candidate ended: the client was served or answered (done), it failed and
// the next candidate may be tried if the retry gate allows (next), its answer was dropped for a
// retry the gate already allowed (retried), or no other may be tried (stop: the body is gone).
enum class tried { done, next, stop, retried };
struct last_failure {
  error_kind kind = error_kind::no_healthy_upstream;
  std::string message = "no healthy endpoint";
  metrics::retry_reason why = metrics::retry_reason::connect_failure;
};

// Whether a call that failed before any answer (or was answered with no message and a status the
// route retries) goes to the next candidate: the route's retries (conditions, attempts), another
// candidate, time left, and the cluster's retry budget, as HTTP requests are retried.
struct retry_gate {
  const config::retry_config& cfg;
  retry_budget& budget;
  metrics::cluster_metrics& cm;
  std::size_t candidates;
  std::size_t tries = 0;  // calls made so far

  bool allows(metrics::retry_reason why, int grpc_code, common::time_point now,
              common::time_point deadline) {
    using metrics::retry_reason;
    unsigned bit = why == retry_reason::connect_failure        ? config::retry_connect_failure
                   : why == retry_reason::reset_before_request ? config::retry_reset_before_request
                   : why == retry_reason::reset_before_response
                       ? config::retry_reset_before_response
                       : config::retry_grpc_status;
    if (!(cfg.on & bit)) return false;
    if (why == retry_reason::grpc_status &&
        (grpc_code < 0 || grpc_code > 16 || !(cfg.grpc_codes & (1u << grpc_code))))
      return false;
    if (tries >= cfg.attempts || tries >= candidates || now >= deadline) return false;
    if (!budget.try_spend(now)) {
      cm.retry_budget_exhausted.inc();
      return false;
    }
    cm.retries[static_cast<int>(why)].inc();
    return true;
  }
};

// The grpc-status of a trailers-only answer (in its head), or -1.
int head_grpc_status(const upstream::h2_call& call) {
  for (const auto& [n, v] : call.response_fields())
    if (n == "grpc-status") {
      int code = -1;
      std::from_chars(v.data(), v.data() + v.size(), code);
      return code;
    }
  return -1;
}

// One call to `ep`: its channel, the request, the response head, then the relay.
asio::awaitable<tried> call_endpoint(request& r, const upstream::endpoint_ref& ep,
                                     call_watch& watch, bool streaming, last_failure& last,
                                     retry_gate& gate) {
  auto& ctx = r.ctx;
  auto& w = r.w;
  const auto& timeouts = r.cfg().routes[*ctx.route].timeouts;
  std::string why;
  auto now = w.clock->now();
  auto count_error = [&](metrics::upstream_error e) {
    ep->metrics->errors[static_cast<int>(e)].inc();
  };
  ep->metrics->requests.inc();
  auto ch = co_await channel_to(r, ep, std::min(ctx.deadline, now + timeouts.connect), why);
  if (!ch) {
    count_error(why == "connect timed out" ? metrics::upstream_error::timeout
                                           : metrics::upstream_error::connect);
    w.ups.record_connect_failure(*ep, w.clock->now());
    last = {error_kind::upstream_unavailable,
            common::cat("connect to ", ep->info->address, " failed: ", why),
            metrics::retry_reason::connect_failure};
    common::log(common::log_level::warn, "proxy", last.message);
    co_return tried::next;
  }
  auto picked = w.clock->now();
  w.ups.request_started(*ep, picked);
  ep->metrics->in_flight.add();
  auto call = ch->start(call_head(r, ep));
  watch.call = &call;
  bool whole = r.ex.body().complete();
  // Off the coroutine frame: GCC 12 warns (-Wmismatched-new-delete) past a certain size.
  auto pump_ptr = std::make_unique<body_pump>(w.io, *w.clock);
  auto& pump = *pump_ptr;
  sent s = sent::ok;
  if (whole)
    s = co_await send_body(r, call);
  else {
    // A request stream still arriving lasts as long as the call may (its deadline), not
    // timeouts.body: a bidirectional ModelStreamInfer session sends as the answers come.
    if (ctx.deadline != common::time_point::max()) r.ex.extend_body_deadline(ctx.deadline);
    pump.start(w.io, r, call);
  }
  bool answered = false;  // (no co_await inside && : GCC 12 miscompiles it)
  if (s == sent::ok)
    answered = co_await call.headers(std::min(ctx.deadline, w.clock->now() + timeouts.first_byte));
  if (!answered) {
    bool late = w.clock->now() >= std::min(ctx.deadline, picked + timeouts.first_byte);
    auto kind = late ? error_kind::upstream_timeout : error_kind::upstream_unavailable;
    auto message = common::cat("upstream ", ep->info->address, ": ", call.error());
    if (!r.ex.client_gone())  // a client that left cancelled the call: no fault of the backend
      count_error(late ? metrics::upstream_error::timeout : metrics::upstream_error::reset);
    if (!whole) {
      // The client's body may still be arriving: the call goes, then what the pump saw.
      call.cancel();
      if (!r.ex.client_gone() && pump.running) co_await r.ex.reply_error(kind, message);
      co_await pump.finished();
      s = pump.result;
    }
    watch.call = nullptr;
    ep->metrics->in_flight.sub();
    w.ups.answered(*ep, picked);
    w.ups.request_finished(*ep, picked, w.clock->now(), false);
    if (r.ex.status() != 0) co_return tried::done;  // answered above
    if (s == sent::client_gone || r.ex.client_gone()) {
      r.ex.set_note("client left during the call");
      co_return tried::done;
    }
    if (s == sent::failed) {
      co_await reply_body_error(r, http::body_result::malformed);
      co_return tried::done;
    }
    // A stream the backend refused (REFUSED_STREAM, or past its GOAWAY) was never processed.
    auto why = call.refused() ? metrics::retry_reason::reset_before_request
                              : metrics::retry_reason::reset_before_response;
    last = {kind, std::move(message), why};
    co_return whole ? tried::next : tried::stop;  // a body streamed away cannot go again
  }
  w.ups.answered(*ep, picked);
  // An answer with no message and a status the route retries (UNAVAILABLE from an engine that is
  // full, say) goes to the next candidate: the client has seen nothing of it.
  if (int code = head_grpc_status(call);
      code > 0 && whole &&
      gate.allows(metrics::retry_reason::grpc_status, code, w.clock->now(), ctx.deadline)) {
    watch.call = nullptr;
    ep->metrics->in_flight.sub();
    w.ups.request_finished(*ep, picked, w.clock->now(), false);
    last = {error_kind::upstream_unavailable,
            common::cat("upstream ", ep->info->address, ": grpc-status ", code),
            metrics::retry_reason::grpc_status};
    co_return tried::retried;
  }
  w.ups.record_success(*ep);
  auto outcome = co_await relay_call(r, call, ep, picked, streaming);
  bool complete = outcome == relayed::complete;
  if (!whole) {
    if (!complete) call.cancel();
    co_await pump.finished();  // the client's stream closes with the response
  }
  watch.call = nullptr;
  auto end = w.clock->now();
  if (complete && !streaming)
    w.ups.observe_response(*ep, common::seconds_between(picked, end), end);
  // A client that left says nothing about the endpoint; a stream the endpoint cut does.
  if (outcome == relayed::upstream_failed || outcome == relayed::upstream_timeout) {
    w.ups.record_cut(*ep, end);
    count_error(outcome == relayed::upstream_timeout ? metrics::upstream_error::timeout
                                                     : metrics::upstream_error::reset);
  }
  ep->metrics->in_flight.sub();
  w.ups.request_finished(*ep, picked, end, complete);
  co_return tried::done;
}
}  // namespace

asio::awaitable<void> serve_grpc(request& r) {
  auto& ctx = r.ctx;
  auto& w = r.w;
  bool go = co_await grpc_preamble(r);
  if (!go) co_return;
  if (!ctx.model.empty() && !healthy_endpoint_serves(w.ups.cluster(ctx.cluster), ctx.model)) {
    w.metrics.rejected(reject_reason::no_route).inc();
    ctx.grpc_status = std::to_string(common::grpc_status_of(error_kind::model_not_found));
    auto why = common::cat("no healthy endpoint serves model '", ctx.model, "'");
    co_await r.ex.reply_error(error_kind::model_not_found, why);
    co_return;
  }
  bool allowed = co_await admit_tenant(r, true);
  if (!allowed) co_return;
  std::optional<admission_slot> slot;
  bool admitted = co_await admit(r, slot);
  if (!admitted) co_return;
  auto& cs = w.ups.cluster(ctx.cluster);
  routing::pick_input in{w.rng, w.clock->now(), ctx.model};
  auto picks = w.balancers[ctx.cluster]->pick(cs.stats_view, in);
  const bool streaming = r.ex.path().ends_with("/ModelStreamInfer");
  call_watch watch;
  r.ex.watch_client(&watch);
  last_failure last;
  ctx.upstream_start = w.clock->now();
  auto& budget = w.budgets[ctx.cluster];
  budget.on_request(in.now);
  retry_gate gate{r.cfg().routes[*ctx.route].retries, budget, w.metrics.cluster(ctx.cluster),
                  picks.size()};
  // Each candidate in turn while nothing has been answered, the body can be sent again (it was
  // whole in the buffer: gRPC allows a retry before any response message) and the route's
  // retries allow it.
  for (std::size_t k = 0; k < picks.size(); ++k) {
    const auto& ep = cs.endpoints[picks[k]];
    w.balancers[ctx.cluster]->dispatched(picks[k], in);
    ++ctx.attempts;
    gate.tries = k + 1;
    ctx.endpoint = ep;
    if (w.clock->now() >= ctx.deadline) {
      last = {error_kind::upstream_timeout, "the request's deadline passed"};
      break;
    }
    auto t = co_await call_endpoint(r, ep, watch, streaming, last, gate);
    if (t == tried::done) {
      r.ex.unwatch_client();
      co_return;
    }
    if (t == tried::stop) break;
    if (t == tried::next && !gate.allows(last.why, -1, w.clock->now(), ctx.deadline)) break;
  }
  r.ex.unwatch_client();
  ctx.grpc_status = std::to_string(common::grpc_status_of(last.kind));
  co_await r.ex.reply_error(last.kind, last.message);
}

}  // namespace meridian::proxy
