// Admission of a request to its cluster: the per-client cap (429 at once), a slot now, or a
// bounded wait by priority (proxy/admission.hpp's queue), answered by the handler's rules.
#include "proxy/admit.hpp"

#include "meridian/common/log.hpp"

namespace meridian::proxy {

namespace asio = boost::asio;
using common::error_kind;
using metrics::reject_reason;

namespace {
// Waits for a slot of a full cluster, at priority `p`. False when the client has been answered
// (shed) or has left.
asio::awaitable<bool> await_admission(request& r, admission& adm, priority p,
                                      std::uint64_t client) {
  auto& ctx = r.ctx;
  auto& cm = r.w.metrics.cluster(ctx.cluster);
  admission::waiter waiter(r.w.io, *r.w.clock, p, client);
  r.ex.watch_client(&waiter);
  cm.pending.add();
  auto verdict = co_await adm.enter(waiter);
  cm.pending.sub();
  r.ex.unwatch_client();
  using v = admission::verdict;
  if (verdict == v::admitted) co_return true;
  if (verdict == v::cancelled) {
    ctx.flags |= flag_client_gone;
    r.w.metrics.route(*ctx.route).cancelled_request.inc();
    r.ex.set_note("client went away while waiting for admission");
    co_return false;
  }
  auto reason = verdict == v::queue_full  ? metrics::shed_reason::queue_full
                : verdict == v::timed_out ? metrics::shed_reason::timeout
                                          : metrics::shed_reason::displaced;
  cm.shed[static_cast<int>(reason)].inc();
  ctx.flags |= flag_overflow;
  const char* why = verdict == v::queue_full  ? "its queue is full"
                    : verdict == v::timed_out ? "the request waited too long for a slot"
                                              : "a request of higher priority took the place";
  co_await r.ex.reply_error(
      error_kind::overloaded,
      common::cat("cluster ", ctx.snap->cfg->clusters[ctx.cluster].name, " is overloaded: ", why));
  co_return false;
}

// Who the client is for a cluster's per-client share: a hash of its address or of a header
// (client_key); 0 when the cluster has no share or the request lacks the header.
std::uint64_t client_of(const request& r, std::string_view key) {
  if (key.empty()) return 0;
  std::string_view v = key == "ip"           ? r.ex.client_ip()
                       : key == "tls_client" ? r.ex.client_subject()
                                             : r.ex.head().find(key);
  if (v.empty()) return 0;
  auto h = static_cast<std::uint64_t>(std::hash<std::string_view>{}(v));
  return h == 0 ? 1 : h;
}

std::uint64_t client_key_of(const request& r) {
  const auto& limits = r.cfg().clusters[r.ctx.cluster].limits;
  return client_of(r, limits.client_key.empty() ? "ip" : limits.client_key);
}

}  // namespace

// Full or not, one client holds at most its cap of the cluster (limits.client_cap): slow or
// hostile clients cannot take every backend connection from the rest. Checked as soon as the
// cluster is known (a capped client's body is not read) and again at admission. True when the
// client has been answered (429).
asio::awaitable<bool> refuse_over_cap(request& r) {
  auto& ctx = r.ctx;
  auto& adm = *r.w.admissions[ctx.cluster];
  if (!adm.at_cap(client_key_of(r))) co_return false;
  r.w.metrics.cluster(ctx.cluster).shed[static_cast<int>(metrics::shed_reason::client_share)].inc();
  ctx.flags |= flag_overflow;
  std::string why =
      common::cat("this client already has ", adm.cap(), " requests in flight to cluster ",
                  ctx.snap->cfg->clusters[ctx.cluster].name, " (limits.client_cap)");
  co_await r.ex.reply_error(error_kind::too_many_requests, why);
  co_return true;
}

// Admission to the cluster: a slot at once, or a bounded wait by priority (x-priority, else the
// route's). False when the client has been answered or has left; else `slot` holds the slot.
asio::awaitable<bool> admit(request& r, std::optional<admission_slot>& slot) {
  auto& ctx = r.ctx;
  auto prio = ctx.snap->cfg->routes[*ctx.route].priority;
  if (auto n = r.ex.head().count("x-priority"); n > 0) {
    auto v = r.ex.head().find("x-priority");
    auto parsed = n == 1 ? parse_priority(v) : std::nullopt;
    if (!parsed) {
      r.w.metrics.rejected(reject_reason::bad_request).inc();
      // Built before the co_await: GCC mishandles a conditional's temporaries across it.
      std::string why =
          n > 1 ? std::string(
                      "x-priority: sent more than once (send one of critical, standard or "
                      "sheddable)")
                : common::cat("x-priority: unknown value '", v,
                              "' (expected critical, standard or sheddable)");
      co_await r.ex.reply_error(error_kind::bad_request, why);
      co_return false;
    }
    prio = *parsed;
  }
  // A tenant's class is where its requests start and the most they may ask for.
  if (ctx.tenant && ctx.tenant->spec.priority) {
    const auto ceiling = *ctx.tenant->spec.priority;
    if (r.ex.head().count("x-priority") == 0 || prio > ceiling) prio = ceiling;
  }
  auto& adm = *r.w.admissions[ctx.cluster];
  auto client = client_key_of(r);
  bool capped = co_await refuse_over_cap(r);
  if (capped) co_return false;
  if (!adm.try_enter(client)) {
    if (adm.over_share(client)) {
      // The cluster is full and this client holds its share: it waits for its own requests, not
      // in front of everyone else's.
      r.w.metrics.cluster(ctx.cluster)
          .shed[static_cast<int>(metrics::shed_reason::client_share)]
          .inc();
      ctx.flags |= flag_overflow;
      co_await r.ex.reply_error(
          error_kind::too_many_requests,
          common::cat("cluster ", ctx.snap->cfg->clusters[ctx.cluster].name,
                      " is full and this client already has its share of it in flight"));
      co_return false;
    }
    bool go = co_await await_admission(r, adm, prio, client);
    if (!go) co_return false;
  }
  slot.emplace(adm, client);
  co_return true;
}

}  // namespace meridian::proxy
