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

#include "meridian/common/log.hpp"
#include "meridian/common/random.hpp"
#include "meridian/probe/fetch.hpp"
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

// What the control thread keeps per endpoint besides the published signals.
struct endpoint_track {
  unsigned ok_run = 0, fail_run = 0;  // consecutive probe results
  upstream::peak_ewma rtt;
  std::array<double, 16> recent_rtt{};  // for the windowed minimum
  std::size_t rtt_samples = 0;
  endpoint_errors errors;
};

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
      : io(io_),
        cfg(std::move(c)),
        topo(std::move(t)),
        reg(r),
        pub(std::move(p)),
        rng(seed),
        clock(clk) {
    auto s = std::make_shared<upstream::signals>();
    s->topo = topo;
    for (const auto& ci : topo->clusters) {
      s->clusters.emplace_back(ci.endpoints.size());
      tracks.emplace_back(ci.endpoints.size());
      mappings.push_back(mapping_of(cfg->clusters[s->clusters.size() - 1].load_metrics));
      for (std::size_t e = 0; e < ci.endpoints.size(); ++e)
        reg.signals(s->clusters.size() - 1, e).healthy.set(1);
    }
    working = *s;
    published = std::move(s);
  }

  asio::io_context& io;
  std::shared_ptr<const config::gateway_config> cfg;
  std::shared_ptr<const upstream::topology> topo;
  metrics::registry& reg;
  publisher pub;
  common::random_source rng;
  const common::clock& clock;
  upstream::signals working;  // the next snapshot, edited in place
  std::shared_ptr<const upstream::signals> published;
  std::vector<std::vector<endpoint_track>> tracks;
  std::vector<load_mapping> mappings;
  std::vector<std::unique_ptr<asio::steady_timer>> timers;
  bool publish_queued = false;
  bool stopped = false;

  // Results that land together go out as one snapshot.
  void changed() {
    if (publish_queued || stopped) return;
    publish_queued = true;
    asio::post(io, [self = shared_from_this()] {
      self->publish_queued = false;
      self->published = std::make_shared<const upstream::signals>(self->working);
      if (self->pub && !self->stopped) self->pub(self->published);
    });
  }

  void probed(std::size_t c, std::size_t e, const fetch_result& r, config::duration timeout);
  void scraped(std::size_t c, std::size_t e, const fetch_result& r);
  void discovered(std::size_t c, std::size_t e, const fetch_result& r);
};

void prober::impl::probed(std::size_t c, std::size_t e, const fetch_result& r,
                          config::duration timeout) {
  const auto& pc = cfg->clusters[c].probe;
  auto& s = working.clusters[c][e];
  auto& t = tracks[c][e];
  auto& m = reg.signals(c, e);
  auto now = clock.now();
  bool ok = r.ok && r.status >= 200 && r.status < 300;
  double sample = r.response_seconds;
  // A probe that timed out says the path takes at least that long.
  if (!r.ok && r.error.find("timed out") != std::string::npos) sample = secs(timeout);
  if (sample >= 0) {
    t.rtt.observe(sample, now, secs(cfg->clusters[c].latency.decay));
    t.recent_rtt[t.rtt_samples++ % t.recent_rtt.size()] = sample;
    std::size_t n = std::min(t.rtt_samples, t.recent_rtt.size());
    s.rtt = t.rtt.value(now, secs(cfg->clusters[c].latency.decay));
    s.rtt_min = *std::min_element(t.recent_rtt.begin(), t.recent_rtt.begin() + n);
    m.rtt.set(s.rtt);
  }
  if (r.connect_seconds >= 0) s.connect = r.connect_seconds;
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
    log(s.healthy ? log_level::info : log_level::warn, "probe", "endpoint ",
        topo->clusters[c].endpoints[e].address, " of cluster ", topo->clusters[c].name, " is ",
        s.healthy ? "healthy" : "unhealthy", s.healthy ? "" : ": ", t.errors.probe);
  changed();
}

void prober::impl::scraped(std::size_t c, std::size_t e, const fetch_result& r) {
  auto& s = working.clusters[c][e];
  auto& t = tracks[c][e];
  auto& m = reg.signals(c, e);
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
      log(log_level::warn, "probe", "load scrape of ", topo->clusters[c].endpoints[e].address,
          " failed: ", why);
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
  s.waiting = reading.waiting.value_or(-1);
  s.running = reading.running.value_or(-1);
  s.kv_usage = reading.kv_usage.value_or(-1);
  if (reading.waiting) m.queue_depth.set(*reading.waiting);
  if (reading.running) m.running.set(*reading.running);
  if (reading.kv_usage) m.kv_usage.set(*reading.kv_usage);
  changed();
}

void prober::impl::discovered(std::size_t c, std::size_t e, const fetch_result& r) {
  auto& t = tracks[c][e];
  std::optional<std::vector<std::string>> ids;
  if (r.ok && r.status == 200) ids = model_ids(r.body);
  if (!ids) {
    // Keep what was known: a server that cannot list its models now still serves them.
    t.errors.models = r.ok ? common::cat("status ", r.status, " or not a model list") : r.error;
    return;
  }
  t.errors.models.clear();
  auto& s = working.clusters[c][e];
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

// One endpoint's probe, scrape or discovery, every interval (jittered by up to a tenth, and
// the first one spread over the whole interval so endpoints are not probed in lockstep).
asio::awaitable<void> run_loop(std::shared_ptr<prober::impl> p, asio::steady_timer* timer,
                               std::size_t c, std::size_t e, loop_spec spec) {
  const auto& info = p->topo->clusters[c].endpoints[e];
  auto wait = std::chrono::duration_cast<config::duration>(spec.interval * p->rng.unit());
  while (!p->stopped) {
    timer->expires_after(wait);
    auto [ec] = co_await timer->async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec || p->stopped) co_return;
    fetch_request req{
        info.resolved, info.address, spec.path, spec.timeout,
        spec.what == task::probe ? std::size_t{64 * 1024} : std::size_t{8 * 1024 * 1024}};
    auto r = co_await fetch(std::move(req), p->clock);
    if (p->stopped) co_return;
    if (spec.what == task::probe)
      p->probed(c, e, r, spec.timeout);
    else if (spec.what == task::scrape)
      p->scraped(c, e, r);
    else
      p->discovered(c, e, r);
    double jitter = 0.9 + 0.2 * p->rng.unit();
    wait = std::chrono::duration_cast<config::duration>(spec.interval * jitter);
  }
}
}  // namespace

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
  for (std::size_t c = 0; c < p.topo->clusters.size(); ++c) {
    const auto& cc = p.cfg->clusters[c];
    for (task what : {task::probe, task::scrape, task::models}) {
      bool on = what == task::probe    ? cc.probe.enabled
                : what == task::scrape ? cc.load_metrics.enabled
                                       : cc.models.enabled;
      if (!on) continue;
      for (std::size_t e = 0; e < p.topo->clusters[c].endpoints.size(); ++e) {
        p.timers.push_back(std::make_unique<asio::steady_timer>(p.io));
        asio::co_spawn(p.io, run_loop(impl_, p.timers.back().get(), c, e, spec_of(cc, what)),
                       asio::detached);
      }
    }
  }
}

void prober::stop() {
  impl_->stopped = true;
  for (auto& t : impl_->timers) t->cancel();
}

std::shared_ptr<const upstream::signals> prober::current() const {
  return impl_->published;
}

const endpoint_errors& prober::errors(std::size_t cluster, std::size_t endpoint) const {
  return impl_->tracks[cluster][endpoint].errors;
}

}  // namespace meridian::probe
