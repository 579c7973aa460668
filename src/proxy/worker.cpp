#include "meridian/proxy/worker.hpp"

#include <malloc.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/intrusive/list.hpp>

#include "meridian/http/host.hpp"
#include "meridian/routing/cost.hpp"
#include "meridian/runtime/timer.hpp"
#include "proxy/handler.hpp"
#include "proxy/worker_context.hpp"

namespace meridian::proxy {

namespace asio = boost::asio;

namespace {
http::connection_settings settings_of(const config::gateway_config& cfg) {
  http::connection_settings s;
  s.limits.max_head_bytes = cfg.limits.max_header_bytes;
  s.limits.max_headers = cfg.limits.max_headers;
  s.max_body_bytes = cfg.limits.max_body_bytes;
  s.header_timeout = cfg.timeouts.header;
  s.body_timeout = cfg.timeouts.body;
  s.idle_timeout = cfg.timeouts.idle;
  s.min_rate = cfg.limits.min_data_rate;
  s.rate_window = cfg.timeouts.data_rate_window;
  s.max_concurrent_streams = cfg.limits.max_concurrent_streams;
  return s;
}

// A worker's own handle on a published snapshot: per-request pins touch only this worker's
// reference count, never a count that every worker shares.
std::shared_ptr<const snapshot> local_pin(std::shared_ptr<const snapshot> global) {
  const snapshot* raw = global.get();
  return std::shared_ptr<const snapshot>(raw, [keep = std::move(global)](const snapshot*) {});
}

// Memory freed by many closed connections goes back to the OS once this many have closed.
constexpr std::size_t trim_after_closed = 1000;
}  // namespace

struct worker::impl {
  impl(asio::io_context& io, std::shared_ptr<const snapshot> snap, metrics::worker_metrics& m,
       std::uint64_t seed, const common::clock& clock)
      : ctx(io, local_pin(std::move(snap)), m, seed, clock),
        h(ctx),
        housekeeping(std::make_unique<runtime::timer>(io, clock)) {
    env.settings = settings_of(*ctx.snap->cfg);
    env.clock = &clock;
    env.rng = &ctx.rng;
    env.metrics = &m;
  }

  worker_context ctx;
  proxy::handler h;
  http::connection_env env;
  boost::intrusive::list<http::session, boost::intrusive::constant_time_size<false>> conns;
  std::unique_ptr<runtime::timer> housekeeping;
  std::size_t peak_connections = 0;
  bool stopped = false;
};

namespace {
// What the picker would make of each endpoint now, for /metrics and /admin/endpoints.
void publish_estimates(worker_context& w, common::time_point now) {
  for (std::size_t c = 0; c < w.ups.size(); ++c) {
    const auto& cfg = w.snap->cfg->clusters[c];
    auto p = routing::cost_params::from(cfg);
    auto& cs = w.ups.cluster(c);
    auto peer_rate = cfg.kind == config::cluster_kind::storage ? routing::peer_rate(cs.stats_view)
                                                               : routing::peer_rates{};
    // The peers a pick compares each endpoint with: here, the whole cluster.
    std::vector<std::uint32_t> all(cs.stats_view.size());
    for (std::size_t e = 0; e < all.size(); ++e) all[e] = static_cast<std::uint32_t>(e);
    auto like = routing::peers_of(cs.stats_view, all, p, now, cs.answer_tokens);
    for (std::size_t e = 0; e < cs.endpoints.size(); ++e) {
      auto& st = cs.endpoints[e]->stats;
      auto cost = routing::expected_cost(st, p, now, like);
      auto& em = *cs.endpoints[e]->metrics;
      // Storage: the picker's cost is the time to the last byte of an object of unknown size.
      if (cfg.kind == config::cluster_kind::storage)
        cost.total =
            routing::expected_completion(st, p, now, unknown_object_bytes, peer_rate).total;
      em.score.set(cost.total);
      if (cost.measured) em.ttft.set(cost.latency);
      if (st.tpot.known()) em.tpot.set(st.tpot.value());
      if (st.decode_slope >= 0) em.decode_slope.set(st.decode_slope);
      st.score_shared.store(cost.total, std::memory_order_relaxed);
      st.latency_shared.store(cost.measured ? cost.latency : -1, std::memory_order_relaxed);
      st.queue_shared.store(cost.queue, std::memory_order_relaxed);
      st.outstanding_shared.store(cost.outstanding, std::memory_order_relaxed);
      st.decode_shared.store(cost.decode, std::memory_order_relaxed);
      st.batch_shared.store(cost.batch, std::memory_order_relaxed);
      st.noise_shared.store(cost.noise, std::memory_order_relaxed);
      st.load_shared.store(cost.load, std::memory_order_relaxed);
      if (st.cache_epoch != st.cache_epoch_seen) {
        w.balancers[c]->forget(static_cast<std::uint32_t>(e));
        st.cache_epoch_seen = st.cache_epoch;
      }
      st.indexed_blocks_shared.store(w.balancers[c]->indexed_blocks(static_cast<std::uint32_t>(e)),
                                     std::memory_order_relaxed);
      if (cfg.kind == config::cluster_kind::storage) {
        double rate = st.throughput.known() ? st.throughput.value() : -1;
        if (rate >= 0) em.throughput.set(rate);
        if (st.flow_rate.known()) em.flow_rate.set(st.flow_rate.value());
        em.transfer_bytes.set(st.transfer_bytes);
        st.transfer_bytes_shared.store(st.transfer_bytes, std::memory_order_relaxed);
      }
    }
  }
}

// Every 50 ms the client-gone watch is armed for requests still waiting on a backend (so a
// client that leaves is noticed within 50 ms, while short requests never arm one); every 100 ms
// the rest: log flush, health, estimates; every second pruning and trimming.
asio::awaitable<void> housekeeping(worker::impl* w) {
  int tick = 0;
  while (!w->stopped && w->housekeeping) {
    auto ec = co_await w->housekeeping->sleep_for(std::chrono::milliseconds(50));
    if (ec || w->stopped) break;
    for (auto& c : w->conns) c.tick();
    if (++tick % 2 != 0) continue;
    w->ctx.log.flush();
    auto now = w->ctx.clock->now();
    w->ctx.ups.refresh_health(now);
    publish_estimates(w->ctx, now);
    if (tick % 20 == 0) {
      w->ctx.ups.prune(now);
      w->ctx.buffers.trim();
      w->h.scratch().trim();
    }
    std::size_t open = w->env.open.load(std::memory_order_relaxed);
    w->peak_connections = std::max(w->peak_connections, open);
    if (w->peak_connections > open + trim_after_closed) {
      ::malloc_trim(0);
      w->peak_connections = open;
    }
  }
}
}  // namespace

worker::worker(asio::io_context& io, std::shared_ptr<const snapshot> snap,
               metrics::worker_metrics& m, std::uint64_t seed, const common::clock& clock)
    : impl_(std::make_unique<impl>(io, std::move(snap), m, seed, clock)) {
  asio::co_spawn(io, housekeeping(impl_.get()), asio::detached);
}

worker::~worker() = default;

http::connection_env& worker::env() {
  return impl_->env;
}

http::handler& worker::served_by() {
  return impl_->h;
}

void worker::track(http::session& s) {
  impl_->conns.push_back(s);
}

std::size_t worker::max_connections() const {
  return impl_->ctx.snap->cfg->limits.max_connections_per_worker;
}

void worker::apply(std::shared_ptr<const snapshot> snap) {
  auto& w = *impl_;
  auto moves = w.ctx.ups.apply(snap->topo);
  auto before = w.ctx.snap;  // the config replaced: the same clusters (config::restart_needed)
  w.ctx.snap = local_pin(std::move(snap));
  w.ctx.make_balancers(before->cfg.get(), &moves);
  w.env.settings = settings_of(*w.ctx.snap->cfg);
}

void worker::apply_signals(std::shared_ptr<const upstream::signals> s) {
  impl_->ctx.ups.apply_signals(*s);
}

void worker::start_drain() {
  auto& w = *impl_;
  w.env.draining = true;
  for (auto& c : w.conns) c.close_if_idle();
  w.ctx.ups.close_all_idle();
}

void worker::abort_all() {
  auto& w = *impl_;
  w.stopped = true;
  if (w.housekeeping) w.housekeeping->cancel();
  for (auto& c : w.conns) c.abort();
  for (auto& [id, ch] : w.ctx.grpc_channels)
    if (ch) ch->close();
  w.ctx.ups.close_all_idle();
  w.ctx.log.flush();
}

void worker::release_io() {
  auto& w = *impl_;
  w.stopped = true;
  w.housekeeping.reset();
  w.h.scratch().clear();
  w.ctx.ups.close_all_idle();
  // gRPC channels go now, or with their reader and writer when the io_context shuts down: never
  // after it (their timers belong to it).
  w.ctx.grpc_channels.clear();
  w.ctx.log.flush();
}

std::size_t worker::connections() const {
  return impl_->env.open.load(std::memory_order_relaxed);
}

const upstream::worker_upstreams& worker::upstreams() const {
  return impl_->ctx.ups;
}

asio::io_context& worker::io() {
  return impl_->ctx.io;
}

}  // namespace meridian::proxy
