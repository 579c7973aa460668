#include "meridian/probe/prober.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <array>
#include <unordered_map>

#include "meridian/common/log.hpp"
#include "meridian/common/random.hpp"
#include "meridian/probe/fetch.hpp"
#include "meridian/probe/grpc_fetch.hpp"
#include "meridian/probe/load_reading.hpp"
#include "meridian/upstream/estimator.hpp"

namespace meridian::probe {

namespace asio = boost::asio;
using common::log;
using common::log_level;

namespace {
enum class task { probe, scrape, models };

double secs(config::duration d) {
  return std::chrono::duration<double>(d).count();
}

// What the control thread keeps per endpoint: what it publishes, how it got there, and the
// timers of the endpoint's loops. An endpoint that leaves the topology is `removed`: its loops
// end, and a result still in flight is dropped.
struct endpoint_track {
  upstream::endpoint_info info;
  upstream::probe_signals s;
  unsigned ok_run = 0, fail_run = 0;  // consecutive probe results
  upstream::peak_ewma rtt;
  std::array<double, 16> recent_rtt{};  // for the windowed minimum
  std::size_t rtt_samples = 0;
  endpoint_errors errors;
  std::vector<std::unique_ptr<asio::steady_timer>> timers;
  bool removed = false;
  metrics::endpoint_signal_metrics& m() { return info.series->signals(); }
};
using track_ptr = std::shared_ptr<endpoint_track>;

load_mapping mapping_of(const config::load_metrics_config& c) {
  auto m = load_mapping::defaults();
  if (!c.waiting.empty()) m.waiting = c.waiting;
  if (!c.running.empty()) m.running = c.running;
  if (!c.kv_cache_usage.empty()) m.kv_usage = c.kv_cache_usage;
  return m;
}

// The ids in an OpenAI model list ({"data":[{"id":...},...]}), sorted; nullopt if it is not one.
std::optional<std::vector<std::string>> model_ids(std::string_view body) {
  boost::system::error_code ec;
  auto v = boost::json::parse(body, ec);
  if (ec || !v.is_object()) return std::nullopt;
  const auto* data = v.as_object().if_contains("data");
  if (data == nullptr || !data->is_array()) return std::nullopt;
  std::vector<std::string> ids;
  for (const auto& m : data->as_array()) {
    if (!m.is_object()) continue;
    const auto* id = m.as_object().if_contains("id");
    if (id != nullptr && id->is_string()) ids.emplace_back(id->as_string());
  }
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}
}  // namespace

struct prober::impl : std::enable_shared_from_this<prober::impl> {
  impl(asio::io_context& io_, std::shared_ptr<const config::gateway_config> c,
       std::shared_ptr<const upstream::topology> t, metrics::registry& r, publisher p,
       std::uint64_t seed, const common::clock& clk)
      : io(io_), cfg(std::move(c)), reg(r), pub(std::move(p)), rng(seed), clock(clk) {
    for (const auto& cc : cfg->clusters) mappings.push_back(mapping_of(cc.load_metrics));
    adopt(std::move(t));
    published = snapshot();
  }

  asio::io_context& io;
  std::shared_ptr<const config::gateway_config> cfg;
  std::shared_ptr<const upstream::topology> topo;
  metrics::registry& reg;
  publisher pub;
  common::random_source rng;
  const common::clock& clock;
  std::shared_ptr<const upstream::signals> published;
  std::vector<std::vector<track_ptr>> tracks;  // per cluster, in topology order
  std::vector<load_mapping> mappings;
  bool publish_queued = false;
  bool started = false;
  bool stopped = false;

  std::shared_ptr<const upstream::signals> snapshot() const {
    auto s = std::make_shared<upstream::signals>();
    s->topo = topo;
    for (const auto& eps : tracks) {
      auto& out = s->clusters.emplace_back();
      for (const auto& t : eps) out.push_back(t->s);
    }
    return s;
  }

  // Results that land together go out as one snapshot.
  void changed() {
    if (publish_queued || stopped) return;
    publish_queued = true;
    asio::post(io, [self = shared_from_this()] {
      self->publish_queued = false;
      self->published = self->snapshot();
      if (self->pub && !self->stopped) self->pub(self->published);
    });
  }

  // Takes `t` on: endpoints that stay keep what was learned about them, new ones start healthy
  // with their loops (once started), the ones that left stop theirs.
  void adopt(std::shared_ptr<const upstream::topology> t) {
    std::unordered_map<upstream::endpoint_id, track_ptr> old;
    for (auto& eps : tracks)
      for (auto& tr : eps) old.emplace(tr->info.id, std::move(tr));
    std::vector<std::vector<track_ptr>> fresh(t->clusters.size());
    for (std::size_t c = 0; c < t->clusters.size(); ++c) {
      for (const auto& info : t->clusters[c].endpoints) {
        track_ptr tr;
        if (auto it = old.find(info.id); it != old.end()) {
          tr = std::move(it->second);
          old.erase(it);
          tr->info = info;
        } else {
          tr = std::make_shared<endpoint_track>();
          tr->info = info;
          tr->m().healthy.set(1);
          if (started) spawn(c, tr);
        }
        fresh[c].push_back(std::move(tr));
      }
    }
    for (auto& [id, tr] : old) {
      tr->removed = true;
      for (auto& timer : tr->timers) timer->cancel();
    }
    tracks = std::move(fresh);
    topo = std::move(t);
  }

  void spawn(std::size_t c, const track_ptr& t);
  void probed(std::size_t c, endpoint_track& t, const fetch_result& r, config::duration timeout);
  void scraped(std::size_t c, endpoint_track& t, const fetch_result& r);
  void discovered(endpoint_track& t, std::optional<std::vector<std::string>> ids, std::string why);
};

void prober::impl::probed(std::size_t c, endpoint_track& t, const fetch_result& r,
                          config::duration timeout) {
  const auto& pc = cfg->clusters[c].probe;
  auto& s = t.s;
  auto& m = t.m();
  auto now = clock.now();
  bool ok = r.ok && r.status >= 200 && r.status < 300;
  double sample = r.response_seconds;
  // A probe that timed out says the path takes at least that long.
  if (!r.ok && r.error.find("timed out") != std::string::npos) sample = secs(timeout);
  if (sample >= 0) {
    t.rtt.observe(sample, now, secs(cfg->clusters[c].latency.decay));
    t.recent_rtt[t.rtt_samples++ % t.recent_rtt.size()] = sample;
    std::size_t n = std::min(t.rtt_samples, t.recent_rtt.size());
    s.rtt = *std::min_element(t.recent_rtt.begin(), t.recent_rtt.begin() + n);
    s.wait = std::max(0.0, t.rtt.value(now, secs(cfg->clusters[c].latency.decay)) - s.rtt);
    m.rtt.set(s.rtt);
    m.probe_wait.set(s.wait);
  }
  if (r.connect_seconds >= 0) {
    s.connect = r.connect_seconds;
    m.connect.set(s.connect);
  }
  if (r.handshake_seconds >= 0) m.handshake.set(r.handshake_seconds);
  s.probed = true;
  s.probed_at = now;
  bool was = s.healthy;
  if (ok) {
    ++s.successes;
    t.fail_run = 0;
    if (++t.ok_run >= pc.rise) s.healthy = true;
    t.errors.probe.clear();
  } else {
    t.ok_run = 0;
    if (++t.fail_run >= pc.fall) s.healthy = false;
    t.errors.probe = r.ok ? common::cat("status ", r.status) : r.error;
    m.probe_failures.inc();
  }
  m.healthy.set(s.healthy ? 1 : 0);
  if (was != s.healthy)
    log(s.healthy ? log_level::info : log_level::warn, "probe", "endpoint ", t.info.address,
        " of cluster ", cfg->clusters[c].name, " is ", s.healthy ? "healthy" : "unhealthy",
        s.healthy ? "" : ": ", t.errors.probe);
  changed();
}

void prober::impl::scraped(std::size_t c, endpoint_track& t, const fetch_result& r) {
  auto& s = t.s;
  auto& m = t.m();
  std::string why;
  if (!r.ok)
    why = r.error;
  else if (r.status != 200)
    why = common::cat("status ", r.status);
  load_reading reading;
  if (why.empty()) {
    reading = extract_load(r.body, mappings[c]);
    if (!reading.any()) why = "no load metric found in the response";
  }
  if (!why.empty()) {
    // The last good reading stays and ages; the cost model fades it out.
    if (t.errors.scrape != why)
      log(log_level::warn, "probe", "load scrape of ", t.info.address, " failed: ", why);
    t.errors.scrape = why;
    s.scrape_failed = true;
    m.scrape_failures.inc();
    changed();
    return;
  }
  t.errors.scrape.clear();
  s.load_known = true;
  s.scrape_failed = false;
  s.scraped_at = clock.now();
  if (reading.started) {
    if (s.started > 0 && *reading.started != s.started) {
      ++s.restarts;
      log(log_level::info, "probe", "endpoint ", t.info.address, " of cluster ",
          cfg->clusters[c].name, " restarted (its process start time changed)");
    }
    s.started = *reading.started;
  }
  s.waiting = reading.waiting.value_or(-1);
  s.running = reading.running.value_or(-1);
  s.kv_usage = reading.kv_usage.value_or(-1);
  if (reading.waiting) m.queue_depth.set(*reading.waiting);
  if (reading.running) m.running.set(*reading.running);
  if (reading.kv_usage) m.kv_usage.set(*reading.kv_usage);
  changed();
}

void prober::impl::discovered(endpoint_track& t, std::optional<std::vector<std::string>> ids,
                              std::string why) {
  if (!ids) {
    // Keep what was known: a server that cannot list its models now still serves them.
    if (t.errors.models != why)
      log(log_level::warn, "probe", "model discovery on ", t.info.address, " failed: ", why);
    t.errors.models = std::move(why);
    return;
  }
  t.errors.models.clear();
  auto& s = t.s;
  std::sort(ids->begin(), ids->end());
  ids->erase(std::unique(ids->begin(), ids->end()), ids->end());
  if (s.models && *s.models == *ids) return;
  s.models = std::make_shared<const std::vector<std::string>>(std::move(*ids));
  changed();
}

namespace {
struct loop_spec {
  task what;
  std::string path;
  config::duration interval, timeout;
};

loop_spec spec_of(const config::cluster_config& c, task what) {
  switch (what) {
    case task::probe:
      return {what, c.probe.path, c.probe.interval, c.probe.timeout};
    case task::scrape:
      return {what, c.load_metrics.path, c.load_metrics.interval, c.load_metrics.timeout};
    case task::models:
      break;
  }
  return {task::models, c.models.path, c.models.interval, c.models.timeout};
}

// The Host a probe sends: the name the endpoint is reached by (its TLS name, else its
// configured host name) with its port, so a server that serves names (SNI, virtual hosts)
// answers for the right one; an IP literal endpoint gets its address.
std::string host_of(const upstream::endpoint_info& info) {
  const std::string& name = info.tls ? info.tls.name : info.host;
  if (name.empty() || name == info.resolved.address().to_string()) return info.address;
  return common::cat(name, ':', info.resolved.port());
}

// One probe, scrape or discovery call, its result handed to the prober (unless it stopped or
// the endpoint left meanwhile). gRPC clusters are probed and asked for their models through
// their gRPC services; every scrape is HTTP, on the metrics port where one is configured.
asio::awaitable<void> call_once(std::shared_ptr<prober::impl> p, track_ptr t, std::size_t c,
                                const loop_spec& spec) {
  const auto& cc = p->cfg->clusters[c];
  if (cc.kind == config::cluster_kind::grpc_inference && spec.what != task::scrape) {
    grpc_fetch_request req{t->info.resolved, host_of(t->info), spec.path, {}, spec.timeout};
    req.tls = t->info.tls;
    if (spec.what == task::probe) {
      auto r = co_await grpc_ready(p->io, std::move(req), p->clock);
      if (!p->stopped && !t->removed) p->probed(c, *t, r, spec.timeout);
    } else {
      auto names = cc.models.names;
      auto list = co_await grpc_models(p->io, std::move(req), std::move(names), p->clock);
      if (!p->stopped && !t->removed) p->discovered(*t, std::move(list.ids), std::move(list.why));
    }
    co_return;
  }
  std::uint16_t port = t->info.resolved.port();
  if (spec.what == task::scrape && cc.load_metrics.port != 0) port = cc.load_metrics.port;
  // A gRPC backend's metrics port speaks plain HTTP (Triton's does), whatever its gRPC port does.
  auto tls = cc.kind == config::cluster_kind::grpc_inference ? upstream::tls_target{} : t->info.tls;
  fetch_request req{
      {t->info.resolved.address(), port},
      host_of(t->info),
      spec.path,
      spec.timeout,
      spec.what == task::probe ? std::size_t{64 * 1024} : std::size_t{8 * 1024 * 1024},
      std::move(tls)};
  auto r = co_await fetch(std::move(req), p->clock);
  if (p->stopped || t->removed) co_return;
  if (spec.what == task::probe) {
    p->probed(c, *t, r, spec.timeout);
  } else if (spec.what == task::scrape) {
    p->scraped(c, *t, r);
  } else {
    std::optional<std::vector<std::string>> ids;
    if (r.ok && r.status == 200) ids = model_ids(r.body);
    std::string why;
    if (!ids) why = r.ok ? common::cat("status ", r.status, " or not a model list") : r.error;
    p->discovered(*t, std::move(ids), std::move(why));
  }
}

// One endpoint's probe, scrape or discovery, every interval (jittered by up to a tenth, and
// the first one spread over the whole interval so endpoints are not probed in lockstep), until
// the prober stops or the endpoint leaves.
asio::awaitable<void> run_loop(std::shared_ptr<prober::impl> p, track_ptr t,
                               asio::steady_timer* timer, std::size_t c, loop_spec spec) {
  auto wait = std::chrono::duration_cast<config::duration>(spec.interval * p->rng.unit());
  while (!p->stopped && !t->removed) {
    timer->expires_after(wait);
    auto [ec] = co_await timer->async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec || p->stopped || t->removed) co_return;
    co_await call_once(p, t, c, spec);
    double jitter = 0.9 + 0.2 * p->rng.unit();
    wait = std::chrono::duration_cast<config::duration>(spec.interval * jitter);
  }
}
}  // namespace

void prober::impl::spawn(std::size_t c, const track_ptr& t) {
  const auto& cc = cfg->clusters[c];
  for (task what : {task::probe, task::scrape, task::models}) {
    bool on = what == task::probe    ? cc.probe.enabled
              : what == task::scrape ? cc.load_metrics.enabled
                                     : cc.models.enabled;
    if (!on) continue;
    t->timers.push_back(std::make_unique<asio::steady_timer>(io));
    asio::co_spawn(io,
                   run_loop(shared_from_this(), t, t->timers.back().get(), c, spec_of(cc, what)),
                   asio::detached);
  }
}

prober::prober(asio::io_context& io, std::shared_ptr<const config::gateway_config> cfg,
               std::shared_ptr<const upstream::topology> topo, metrics::registry& reg,
               publisher pub, std::uint64_t seed, const common::clock& clock)
    : impl_(std::make_shared<impl>(io, std::move(cfg), std::move(topo), reg, std::move(pub), seed,
                                   clock)) {}

prober::~prober() {
  stop();
}

void prober::start() {
  auto& p = *impl_;
  p.started = true;
  for (std::size_t c = 0; c < p.tracks.size(); ++c)
    for (const auto& t : p.tracks[c]) p.spawn(c, t);
}

void prober::set_topology(std::shared_ptr<const config::gateway_config> cfg,
                          std::shared_ptr<const upstream::topology> topo) {
  // Probe, scrape and discovery settings need a restart (config::restart_needed); names and
  // latency settings follow the config.
  impl_->cfg = std::move(cfg);
  impl_->adopt(std::move(topo));
  impl_->published = impl_->snapshot();
  impl_->changed();
}

void prober::stop() {
  impl_->stopped = true;
  for (auto& eps : impl_->tracks)
    for (auto& t : eps)
      for (auto& timer : t->timers) timer->cancel();
}

std::shared_ptr<const upstream::signals> prober::current() const {
  return impl_->published;
}

const endpoint_errors& prober::errors(std::size_t cluster, std::size_t endpoint) const {
  return impl_->tracks[cluster][endpoint]->errors;
}

}  // namespace meridian::probe
