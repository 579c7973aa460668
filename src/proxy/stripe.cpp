#include "proxy/stripe.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include "meridian/runtime/timer.hpp"

#include <algorithm>
#include <deque>
#include <utility>
#include <vector>

#include "meridian/common/log.hpp"
#include "meridian/http/headers.hpp"
#include "proxy/object_resume.hpp"

namespace meridian::proxy {

namespace asio = boost::asio;
using common::outcome;
using common::outcome_kind;

namespace {
constexpr std::size_t none = static_cast<std::size_t>(-1);
constexpr int max_tries = 3;  // fetches of one part that fail before the download is cut

struct part {
  std::uint64_t first = 0, last = 0;
  std::string data;
  bool done = false;
  bool reissued = false;
  int tries = 0;    // fetches started
  int running = 0;  // fetches under way
  std::uint64_t size() const { return last - first + 1; }
};

// One fetch of one part: its own attempt (connection, buffer, deadlines) and the bytes it read.
struct fetcher {
  std::unique_ptr<attempt> at;
  std::size_t part = none;
  upstream::endpoint_ref ep;
  bool running = false;
  bool reported = true;  // its end has been handled by the download
  bool ok = false;
  bool handover = false;  // its answer to a cold object's first part goes to the client as it is
  std::string head, data, why;
  common::time_point started{};
};

// A striped download. Each fetch runs as its own coroutine and, when it ends, cancels `wake`, on
// which the download waits; the download returns only once no fetch runs, since they refer to
// this object in its frame. The client leaving cancels them all.
struct stripe_state final : http::cancellable {
  explicit stripe_state(request& req) : r(req), w(req.w), c(req.ex), wake(req.w.io, *req.w.clock) {}
  request& r;
  worker_context& w;
  http::exchange& c;
  runtime::timer wake;
  std::deque<part> parts;        // a deque: fetches hold references while later parts are added
  std::deque<fetcher> fetchers;  // a deque: running fetches refer to their element
  std::string etag, base_head;
  std::uint64_t total = 0;
  bool version_known = false;  // part 0 named the object's version and size
  bool cold = false;           // the object's size was not known: part 0 asks for it
  fetcher* handed_over = nullptr;
  double best_rate = 0;  // bytes/s of the fastest part so far

  void cancel() override {
    for (auto& f : fetchers)
      if (f.running) f.at->cancel();
  }
  std::size_t in_flight() const {
    std::size_t n = 0;
    for (const auto& p : parts) n += !p.done && p.running > 0 ? 1 : 0;
    return n;
  }
  bool any_running() const {
    return std::any_of(fetchers.begin(), fetchers.end(), [](const auto& f) { return f.running; });
  }
  asio::awaitable<void> sleep_for(common::duration d) { co_await wake.sleep_for(d); }
};

// Part 0's answer names the object: a 206 with a strong ETag and the object's size. Builds the
// client's 200 head from it (its headers, less Content-Range, with the whole length).
bool learn_version(stripe_state& s, fetcher& f, part& p) {
  const auto& r = f.at->response();
  std::uint64_t first = 0, last = 0, total = 0;
  auto cr = r.find("content-range");
  auto etag = r.find("etag");
  if (r.status != 206 || !parse_content_range(cr, first, last, &total) || first != 0 ||
      total == 0 || last != std::min(p.last, total - 1) || !strong_etag(etag) ||
      r.body != http::body_kind::content_length || r.content_length != last + 1) {
    f.why = common::cat("its first part was answered ", r.status, " '", cr, "' ", etag);
    return false;
  }
  p.last = last;
  s.total = total;
  s.etag.assign(etag);
  const auto& ctx = s.r.ctx;
  s.w.sizes().put(object_sizes::key_of(ctx.cluster, s.c.head().host, s.c.path()), total);
  http::response_head h = r;
  std::vector<http::header> kept;
  for (const auto& field : r.fields())
    if (!http::iequals(field.name, "content-range")) kept.push_back(field);
  h.headers = kept;
  h.header_count = kept.size();
  h.status = 200;
  h.reason = "OK";
  s.c.start_response(h, http::body_kind::content_length, total);
  s.version_known = true;
  return true;
}

// The answer to a later part: exactly its bytes, of part 0's version.
bool same_version(fetcher& f, const part& p, const stripe_state& s) {
  std::string why;
  if (answers_range(f.at->response(), p.first, p.last, s.etag, why)) return true;
  f.why = common::cat("part ", p.first, '-', p.last, ": ", why);
  return false;
}

// A cold object's first part answered with something other than a usable 206 that is an answer
// about the object, not about the Range: a 200 (the store ignores Range) or a client error other
// than 416. That goes to the client as it is. A 5xx is served the ordinary way (with its retries);
// a 206 the gateway cannot use, or a 416 (an empty object), is asked for whole.
bool answer_stands(const http::response_head& r) {
  return (r.status >= 200 && r.status < 300 && r.status != 206) ||
         (r.status >= 300 && r.status < 500 && r.status != 416);
}

asio::awaitable<void> fetch(stripe_state& s, fetcher& f) {
  auto& p = s.parts[f.part];
  auto& at = *f.at;
  auto t = s.r.try_on(f.ep, f.head);
  t.transfer = static_cast<double>(p.size());
  auto o = co_await at.run(std::move(t), s.c);
  if (!o.ok()) {
    f.why = o.message;
    co_return;
  }
  bool usable = f.part == 0 && !s.version_known ? learn_version(s, f, p) : same_version(f, p, s);
  if (!usable) {
    if (f.part == 0 && s.cold && answer_stands(at.response())) {
      f.handover = true;  // its connection stays open for the relay
      co_return;
    }
    at.finish(false);
    co_return;
  }
  const std::uint64_t len = p.size();
  f.data.reserve(static_cast<std::size_t>(len));
  while (true) {
    auto b = at.buffered();
    auto n = static_cast<std::size_t>(std::min<std::uint64_t>(b.size(), len - f.data.size()));
    if (n) {
      at.on_payload(b.substr(0, n));
      f.data.append(b.data(), n);
      at.consume(n);
    }
    if (f.data.size() == len) break;
    if (co_await at.read_more(at.next_read_deadline()) == 0) {
      f.why =
          at.timed_out() ? "the replica stalled during a part" : "the replica failed during a part";
      at.finish(false);
      co_return;
    }
  }
  at.mark_complete();
  at.finish(at.buffered().empty() && at.response().keep_alive);
  f.ok = true;
}

// Starts a fetch of part `i` on the best endpoint other than `avoid` (when there is one).
void launch(stripe_state& s, std::size_t i, const upstream::endpoint_ref& avoid) {
  auto it = std::find_if(s.fetchers.begin(), s.fetchers.end(),
                         [](const auto& f) { return !f.running && f.reported; });
  if (it == s.fetchers.end()) {
    s.fetchers.emplace_back();
    it = std::prev(s.fetchers.end());
    it->at = std::make_unique<attempt>(s.w);
  }
  auto& f = *it;
  auto& p = s.parts[i];
  auto& ctx = s.r.ctx;
  auto& cs = s.w.ups.cluster(ctx.cluster);
  routing::pick_input in{s.w.rng, s.w.clock->now()};
  in.bytes = static_cast<double>(p.size());
  auto picks = s.w.balancers[ctx.cluster]->pick(cs.stats_view, in);
  f.part = i;
  f.ok = false;
  f.data.clear();
  ++p.tries;
  ++p.running;
  if (picks.empty()) {  // the cluster has no endpoint now: a failed fetch
    f.why = "the cluster has no endpoint";
    f.reported = false;
    s.wake.cancel();
    return;
  }
  f.ep = cs.endpoints[picks[0]];
  for (auto k : picks)
    if (cs.endpoints[k] != avoid) {
      f.ep = cs.endpoints[k];
      break;
    }
  f.ep->metrics
      ->decisions[static_cast<int>(p.tries > 0 ? metrics::decision::retry
                                               : metrics::decision::score)]
      .inc();
  f.why.clear();
  f.head = ranged_head(s.base_head, p.first, p.last, s.etag);
  f.started = s.w.clock->now();
  f.running = true;
  f.reported = false;
  ++ctx.attempts;
  ctx.endpoint = f.ep;
  asio::co_spawn(s.w.io, fetch(s, f), [&s, &f](std::exception_ptr e) {
    if (e) f.ok = false;
    f.running = false;
    s.wake.cancel();
  });
}

outcome failed(stripe_state& s, outcome_kind kind, std::string message) {
  outcome o;
  o.kind = kind;
  o.message = std::move(message);
  o.bytes_to_client = s.c.bytes_out();  // some: the response is left unfinished (broken)
  return o;
}

// Handles the fetches that ended: a part done, asked again elsewhere, or the download failed
// (an outcome). `cm`: the cluster's metrics.
std::optional<outcome> settle_fetches(stripe_state& s, metrics::cluster_metrics& cm) {
  for (auto& f : s.fetchers) {
    if (f.running || f.reported) continue;
    // The fetcher is free from here on: a relaunch below may reuse it.
    f.reported = true;
    const std::size_t i = std::exchange(f.part, none);
    const upstream::endpoint_ref ep = f.ep;
    auto& p = s.parts[i];
    --p.running;
    if (f.handover) {
      s.handed_over = &f;
      outcome o;
      o.status = f.at->response().status;
      return o;
    }
    if (f.ok && !p.done) {
      double secs = common::seconds_between(f.started, s.w.clock->now());
      if (secs > 0) s.best_rate = std::max(s.best_rate, static_cast<double>(p.size()) / secs);
      p.data = std::move(f.data);
      p.done = true;
      cm.parts[0].inc();
      for (auto& other : s.fetchers)
        if (other.running && other.part == i) other.at->abandon();
    } else if (!f.ok && !p.done) {
      cm.parts[2].inc();
      if (!s.version_known) return failed(s, outcome_kind::bad_response, f.why);
      common::log(common::log_level::info, "proxy", "request ", s.c.request_id(), ": part ",
                  p.first, '-', p.last, " from ", ep ? ep->info->address : std::string("-"),
                  " failed: ", f.why);
      if (p.running == 0 && p.tries >= max_tries)
        return failed(s, outcome_kind::reset_during_response,
                      common::cat("no replica delivered part ", p.first, '-', p.last, ": ", f.why));
      if (p.running == 0) launch(s, i, ep);
    }
  }
  return std::nullopt;
}

// The parts of the object after part 0, once its size is known (stripe_plan).
void plan_parts(stripe_state& s, const config::stripe_config& sc) {
  for (auto [first, last] : stripe_plan(s.total, s.parts[0].last, sc)) {
    part p;
    p.first = first;
    p.last = last;
    s.parts.push_back(std::move(p));
  }
}

// Part i, which the client waits for, has run far longer than parts take: a second replica is
// asked for it too.
void reissue_if_lagging(stripe_state& s, std::size_t i, metrics::cluster_metrics& cm) {
  auto& p = s.parts[i];
  if (p.done || p.reissued || p.running != 1 || s.best_rate <= 0) return;
  auto f = std::find_if(s.fetchers.begin(), s.fetchers.end(),
                        [&](const auto& x) { return x.running && x.part == i; });
  if (f == s.fetchers.end()) return;
  double expected = static_cast<double>(p.size()) / s.best_rate;
  double ran = common::seconds_between(f->started, s.w.clock->now());
  if (ran < std::max(0.05, 3 * expected)) return;
  p.reissued = true;
  cm.parts[1].inc();
  const upstream::endpoint_ref lagging = f->ep;
  launch(s, i, lagging);
}

asio::awaitable<outcome> drive(stripe_state& s, const config::stripe_config& sc) {
  auto& cm = s.w.metrics.cluster(s.r.ctx.cluster);
  std::size_t deliver = 0, next = 1;
  bool head_sent = false;
  while (true) {
    if (s.c.client_gone())
      co_return failed(s, outcome_kind::client_gone, "client went away during the response");
    if (auto o = settle_fetches(s, cm)) co_return std::move(*o);
    if (s.version_known && !head_sent) {
      plan_parts(s, sc);
      s.r.ctx.first_byte = s.w.clock->now();
      bool sent = co_await s.c.send({}, false);  // the head, started by learn_version()
      if (!sent)
        co_return failed(s, outcome_kind::client_gone, "client went away during the response");
      head_sent = true;
      if (s.total >= sc.min_size) cm.stripes.inc();
    }
    while (head_sent && next < s.parts.size() && s.in_flight() < sc.max_parallel &&
           next < deliver + 2 * sc.max_parallel)
      launch(s, next++, nullptr);
    while (head_sent && deliver < s.parts.size() && s.parts[deliver].done) {
      std::array<std::string_view, 1> payload{s.parts[deliver].data};
      bool sent = co_await s.c.send(payload, deliver + 1 == s.parts.size());
      if (!sent)
        co_return failed(s, outcome_kind::client_gone, "client went away during the response");
      std::string().swap(s.parts[deliver].data);
      ++deliver;
    }
    if (head_sent && deliver == s.parts.size()) {
      outcome o;
      o.status = 200;
      o.bytes_to_client = s.c.bytes_out();
      co_return o;
    }
    if (head_sent) reissue_if_lagging(s, deliver, cm);
    co_await s.sleep_for(std::chrono::milliseconds(20));
  }
}
}  // namespace

std::vector<std::pair<std::uint64_t, std::uint64_t>> stripe_plan(std::uint64_t total,
                                                                 std::uint64_t first_last,
                                                                 const config::stripe_config& sc) {
  std::vector<std::pair<std::uint64_t, std::uint64_t>> out;
  if (total == 0 || sc.part_size == 0) return out;
  std::uint64_t part_size = total < sc.min_size ? total : sc.part_size;
  for (std::uint64_t first = first_last + 1; first < total; first += part_size)
    out.emplace_back(first, std::min(total, first + part_size) - 1);
  return out;
}

bool stripes(request& r) {
  const auto& ctx = r.ctx;
  const auto& cluster = r.cfg().clusters[ctx.cluster];
  if (!cluster.stripe.enabled || cluster.kind != config::cluster_kind::storage) return false;
  if (r.ex.method() != "GET") return false;
  // A Range, or a precondition (a 304 or 412 is the backend's to give), goes through whole.
  for (std::string_view h : {"range", "if-range", "if-match", "if-none-match", "if-modified-since",
                             "if-unmodified-since"})
    if (!r.ex.head().find(h).empty()) return false;
  auto size = r.w.sizes().find(object_sizes::key_of(ctx.cluster, r.ex.head().host, r.ex.path()));
  return !size || *size >= cluster.stripe.min_size;
}

asio::awaitable<stripe_outcome> stripe_get(request& r) {
  const auto& sc = r.cfg().clusters[r.ctx.cluster].stripe;
  stripe_state s(r);
  s.cold = !r.w.sizes().find(object_sizes::key_of(r.ctx.cluster, r.ex.head().host, r.ex.path()));
  http::build_upstream_request(s.base_head, r.ex.head(),
                               r.forward(),
                               http::out_framing::none, 0);
  part first;
  first.last = sc.part_size - 1;
  s.parts.push_back(std::move(first));
  r.ctx.upstream_start = r.w.clock->now();
  r.ex.watch_client(&s);
  launch(s, 0, nullptr);
  auto o = co_await drive(s, sc);
  for (auto& f : s.fetchers)
    if (f.running) f.at->abandon();
  while (s.any_running()) co_await s.sleep_for(std::chrono::seconds(60));
  r.ex.unwatch_client();
  stripe_outcome out;
  if (s.handed_over) {
    // The first part's try, with its answer, becomes the request's.
    std::swap(r.at, s.handed_over->at);
    out.result = stripe_result::answered;
    out.outcome = std::move(o);
    co_return out;
  }
  if (!o.ok() && o.bytes_to_client > 0 && o.kind != outcome_kind::client_gone)
    r.w.metrics.cluster(r.ctx.cluster)
        .streams_interrupted[static_cast<int>(metrics::interruption::upstream)]
        .inc();
  out.result = o.ok() || o.bytes_to_client > 0 || o.kind == outcome_kind::client_gone
                   ? stripe_result::served
                   : stripe_result::not_served;
  out.outcome = std::move(o);
  co_return out;
}

}  // namespace meridian::proxy
