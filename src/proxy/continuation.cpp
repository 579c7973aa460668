#include "proxy/continuation.hpp"

#include <algorithm>
#include <array>

#include "meridian/common/log.hpp"
#include "meridian/http/headers.hpp"
#include "proxy/relay.hpp"

namespace meridian::proxy {

namespace asio = boost::asio;
using common::outcome;
using common::outcome_kind;

bool prepare_resume(request& r) {
  const auto& ctx = r.ctx;
  if (!ctx.route || r.cfg().routes[*ctx.route].resume.attempts == 0) return false;
  if (r.ex.head().body != http::body_kind::content_length || !r.ex.body().complete()) return false;
  auto path = r.ex.path();
  bool chat = path.ends_with("/chat/completions");
  if (!chat && !path.ends_with("/completions")) return false;
  return r.resume.begin(r.ex.buffered_body(), chat);
}

namespace {
constexpr std::size_t candidates_max = routing::candidates::capacity;

bool cut(const outcome& o) {
  return o.kind == outcome_kind::reset_during_response || o.kind == outcome_kind::stalled_response;
}

// One continuation: the request with the text so far, to the best candidate other than the
// endpoint that cut the stream; its events follow in the client's response. A failure before
// any of its events were relayed leaves the stream where it was.
asio::awaitable<outcome> continue_stream(request& r) {
  auto& ctx = r.ctx;
  auto& cs = r.w.ups.cluster(ctx.cluster);
  auto failed = r.at->endpoint();
  routing::pick_input in{r.w.rng, r.w.clock->now(),
                         r.guard.routed ? std::string_view(*r.guard.routed) : ""};
  auto picks = r.w.balancers[ctx.cluster]->pick(cs.stats_view, in);
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
  r.resume_body = r.resume.continuation();
  http::build_upstream_request(r.resume_head, r.ex.head(),
                               r.forward(),
                               http::out_framing::content_length, r.resume_body.size());
  auto& at = *r.at;
  ++ctx.attempts;
  ctx.endpoint = ep;
  // Not counted in the route's figures: the request's first token was counted already.
  auto t = r.try_on(std::move(ep), r.resume_head);
  t.body = r.resume_body;
  auto o = co_await at.run(std::move(t), r.ex);
  if (!o.ok()) co_return o;
  if (o.status != 200 || !at.stream().sse()) {
    at.finish(false);
    o.kind = outcome_kind::bad_response;
    o.message = common::cat("the stream's continuation was answered ", o.status,
                            at.stream().sse() ? "" : " without an event stream");
    co_return o;
  }
  co_return co_await relay_continuation(at, r.ex, {&r.resume, nullptr});
}

// The replicas an object's continuation went to: one that failed it before relaying a byte or
// holds another version is not asked again; one that relayed some of it before failing is asked
// again only when no replica is left that has not been tried (its failure may have passed).
class tried {
 public:
  // Kept in the order of their last try.
  void add(upstream::endpoint_ref e, bool usable) {
    if (auto k = find(e); k < n_) {
      std::rotate(eps_.begin() + static_cast<std::ptrdiff_t>(k),
                  eps_.begin() + static_cast<std::ptrdiff_t>(k + 1),
                  eps_.begin() + static_cast<std::ptrdiff_t>(n_));
      std::rotate(usable_.begin() + static_cast<std::ptrdiff_t>(k),
                  usable_.begin() + static_cast<std::ptrdiff_t>(k + 1),
                  usable_.begin() + static_cast<std::ptrdiff_t>(n_));
      --n_;
    }
    if (n_ == eps_.size()) return;
    eps_[n_] = std::move(e);
    usable_[n_++] = usable;
  }
  // The first of `picks` not tried yet, else the usable one tried longest ago; null: none.
  upstream::endpoint_ref choose(const routing::candidates& picks,
                                const upstream::cluster_state& cs) const {
    for (auto i : picks)
      if (find(cs.endpoints[i]) == n_) return cs.endpoints[i];
    for (std::size_t k = 0; k < n_; ++k)
      if (usable_[k] && std::find_if(picks.begin(), picks.end(), [&](auto i) {
                          return cs.endpoints[i] == eps_[k];
                        }) != picks.end())
        return eps_[k];
    return nullptr;
  }

 private:
  std::size_t find(const upstream::endpoint_ref& e) const {
    for (std::size_t i = 0; i < n_; ++i)
      if (eps_[i] == e) return i;
    return n_;
  }
  std::array<upstream::endpoint_ref, candidates_max> eps_;
  std::array<bool, candidates_max> usable_{};
  std::size_t n_ = 0;
};

// One try at continuing an object's body on `ep`: a Range from the next byte owed, If-Range its
// ETag. Not ok, or ok with `why` set (not a continuation: its response was dropped), or ok and
// relayed (then the outcome is the relay's).
asio::awaitable<outcome> continue_object(request& r, upstream::endpoint_ref ep, std::string& why) {
  auto& ctx = r.ctx;
  ep->metrics->decisions[static_cast<int>(metrics::decision::retry)].inc();
  http::build_upstream_request(r.resume_body, r.ex.head(),
                               r.forward(),
                               http::out_framing::none, 0);
  r.resume_head = r.object.continuation_head(r.resume_body);
  auto& at = *r.at;
  ++ctx.attempts;
  ctx.endpoint = ep;
  auto t = r.try_on(std::move(ep), r.resume_head);
  t.transfer = static_cast<double>(r.object.last() - r.object.next() + 1);
  auto o = co_await at.run(std::move(t), r.ex);
  if (!o.ok()) co_return o;
  if (!r.object.continues(at.response(), why)) {
    at.finish(false);
    co_return o;
  }
  co_return co_await relay_continuation(at, r.ex, {nullptr, &r.object});
}

// An object's GET cut by its replica: continued from the next byte on another replica holding
// the same version, as often as the route allows. When none can, the response ends abnormally
// (its connection closes short of the Content-Length), never as a clean short body.
asio::awaitable<outcome> resume_object(request& r, outcome o) {
  auto& ctx = r.ctx;
  auto& cm = r.w.metrics.cluster(ctx.cluster);
  auto& cs = r.w.ups.cluster(ctx.cluster);
  unsigned left = r.cfg().routes[*ctx.route].resume.attempts;
  tried done;
  done.add(r.at->endpoint(), true);
  while (left > 0 && !r.at->past_total() && !r.ex.client_gone()) {
    --left;
    routing::pick_input in{r.w.rng, r.w.clock->now()};
    in.bytes = r.object.last() - r.object.next() + 1;
    auto picks = r.w.balancers[ctx.cluster]->pick(cs.stats_view, in);
    auto ep = done.choose(picks, cs);
    if (!ep) break;
    auto from = r.object.next();
    std::string why;
    auto address = ep->info->address;
    auto next = co_await continue_object(r, ep, why);
    bool relayed = r.object.next() > from;
    done.add(std::move(ep), relayed);
    bool answered = relayed || (next.ok() && why.empty());
    cm.object_resumes[answered ? 0 : 1].inc();
    if (relayed) ctx.flags |= flag_resumed;
    bool finished = next.ok() && why.empty();
    if (!why.empty()) next.message = std::move(why);
    common::log(common::log_level::info, "proxy", "request ", r.ex.request_id(),
                ": object body cut at byte ", from, "; replica ", address,
                finished ? " continued it to the end" : " did not finish it: ",
                finished ? "" : next.message);
    if (finished || next.kind == outcome_kind::client_gone) co_return next;
    if (relayed)
      o = std::move(next);
    else
      o.message = common::cat(o.message, "; ", next.message);
  }
  r.at->count_interruption(r.at->timed_out() && r.at->past_total()
                               ? metrics::interruption::deadline
                               : metrics::interruption::upstream);
  co_return o;  // unfinished: the exchange ends it as broken
}
}  // namespace

bool prepare_object_resume(request& r) {
  const auto& ctx = r.ctx;
  if (r.ex.method() != "GET" || r.cfg().clusters[ctx.cluster].kind != config::cluster_kind::storage)
    return false;
  if (!ctx.route || r.cfg().routes[*ctx.route].resume.attempts == 0) return false;
  return r.object.begin(r.at->response());
}

asio::awaitable<outcome> after_relay(request& r, outcome o) {
  if (!cut(o)) co_return o;
  if (r.object.active()) co_return co_await resume_object(r, std::move(o));
  auto& ctx = r.ctx;
  auto& cm = r.w.metrics.cluster(ctx.cluster);
  unsigned left = r.resume.active() ? r.cfg().routes[*ctx.route].resume.attempts : 0;
  bool tell = error_event_fits(*r.at, r.ex);
  while (left > 0 && r.resume.resumable() && !r.at->past_total() && !r.ex.client_gone()) {
    --left;
    auto before = r.ex.bytes_out();
    auto next = co_await continue_stream(r);
    bool relayed = r.ex.bytes_out() > before;
    cm.resumes[next.ok() || relayed ? 0 : 1].inc();
    if (relayed) ctx.flags |= flag_resumed;
    common::log(common::log_level::info, "proxy", "request ", r.ex.request_id(), ": stream resumed",
                next.ok() ? "" : ", not finished: ", next.message);
    if (next.ok() || next.kind == outcome_kind::client_gone) co_return next;
    if (relayed) {
      tell = error_event_fits(*r.at, r.ex);
      o = std::move(next);
    } else {
      o.message = common::cat(o.message, "; resume failed: ", next.message);
    }
  }
  co_await end_broken_stream(*r.at, r.ex, o, tell);
  co_return o;
}

}  // namespace meridian::proxy
