// Everything one proxy worker's requests share: the snapshot in force, the upstream pools and
// stats, balancers, the random source, clock, metrics, access log and a pool of upstream
// buffers. Owned and used by one worker thread.
#pragma once

#include <boost/asio/io_context.hpp>

#include <algorithm>
#include <cstring>
#include <memory>
#include <unordered_map>
#include <vector>

#include "meridian/common/clock.hpp"
#include "meridian/common/random.hpp"
#include "meridian/http/parser.hpp"
#include "meridian/metrics/metrics.hpp"
#include "meridian/proxy/access_log.hpp"
#include "meridian/proxy/hedge_policy.hpp"
#include "meridian/proxy/retry_policy.hpp"
#include "meridian/proxy/snapshot.hpp"
#include "meridian/routing/balancer.hpp"
#include "meridian/upstream/cluster.hpp"
#include "meridian/upstream/h2_channel.hpp"
#include "proxy/admission.hpp"
#include "proxy/object_size.hpp"

namespace meridian::proxy {

// The scratch an upstream exchange needs: response bytes and header storage. Taken from the
// worker's pool for one attempt and given back after, so idle client connections hold none.
// The bytes are left uninitialised: zeroing 32 KiB per exchange showed in profiles.
struct upstream_buffers {
  std::unique_ptr<char[]> bytes;
  std::size_t size = 0;
  std::vector<http::header> fields;

  // Doubles the byte buffer, keeping the first `used` bytes.
  void grow(std::size_t used) {
    std::unique_ptr<char[]> bigger(new char[size * 2]);
    std::memcpy(bigger.get(), bytes.get(), used);
    bytes = std::move(bigger);
    size *= 2;
  }
};

// Spare upstream buffers of one worker: as many as recent concurrency needed, no more (trim()
// gives back what the last period did not use).
class buffer_pool {
 public:
  buffer_pool(std::size_t bytes, std::size_t fields) : bytes_(bytes), fields_(fields) {}
  std::unique_ptr<upstream_buffers> take() {
    peak_ = std::max(peak_, ++in_use_);
    if (free_.empty()) {
      auto b = std::make_unique<upstream_buffers>();
      b->bytes.reset(new char[bytes_]);
      b->size = bytes_;
      b->fields.resize(fields_);
      return b;
    }
    auto b = std::move(free_.back());
    free_.pop_back();
    return b;
  }
  void give(std::unique_ptr<upstream_buffers> b) {
    --in_use_;
    if (b->size == bytes_) free_.push_back(std::move(b));  // a grown one goes
  }
  // Keeps at most the peak number in use since the last trim (housekeeping).
  void trim() {
    if (free_.size() + in_use_ > peak_) free_.resize(peak_ > in_use_ ? peak_ - in_use_ : 0);
    peak_ = in_use_;
  }

 private:
  std::size_t bytes_, fields_;
  std::size_t in_use_ = 0, peak_ = 0;
  std::vector<std::unique_ptr<upstream_buffers>> free_;
};

struct worker_context {
  worker_context(boost::asio::io_context& io_, std::shared_ptr<const snapshot> snap_,
                 metrics::worker_metrics& m, std::uint64_t seed, const common::clock& clk)
      : io(io_),
        snap(std::move(snap_)),
        ups(snap->topo, m.index()),
        rng(seed),
        clock(&clk),
        metrics(m),
        log(snap->cfg->access_log),
        buffers(32 * 1024, snap->cfg->limits.max_headers) {
    make_balancers();
  }

  // Per cluster: its balancer, its retry budget and its admission (this worker's share of the
  // gateway's figures); per route, its hedge policy. After a reload or a DNS change (`before`:
  // the config replaced, of the same clusters and routes; `moves`: where endpoints went) a
  // balancer is rebuilt only if its settings changed (it keeps its prefix index otherwise,
  // renumbered), and budgets, admissions and hedge policies take the new figures in place:
  // waiters and slots hold on to them.
  void make_balancers(const config::gateway_config* before = nullptr,
                      const upstream::endpoint_moves* moves = nullptr) {
    const std::size_t n = snap->workers;
    auto share = [n](std::size_t v) { return (v + n - 1) / n; };
    const auto& clusters = snap->cfg->clusters;
    if (!before) balancers.clear(), budgets.clear(), admissions.clear(), hedges.clear();
    const auto& routes = snap->cfg->routes;
    for (std::size_t i = 0; i < routes.size(); ++i) {
      if (before)
        hedges[i].configure(routes[i].hedge);
      else
        hedges.emplace_back(routes[i].hedge);
    }
    for (std::size_t i = 0; i < clusters.size(); ++i) {
      const auto& c = clusters[i];
      const auto& eps = snap->topo->clusters[i].endpoints;
      const std::size_t pending = c.limits.max_pending
                                      ? share(*c.limits.max_pending)
                                      : snap->cfg->limits.max_connections_per_worker;
      std::size_t inflight = c.limits.max_inflight ? share(c.limits.max_inflight)
                                                   : std::max<std::size_t>(eps.size(), 1) *
                                                         c.pool.max_connections_per_endpoint;
      double floor = c.retries.budget_min_per_second / static_cast<double>(n);
      double client_share = c.limits.client_key.empty() ? 0 : c.limits.client_share;
      // One client's cap: a part of the connections this worker may open to the cluster.
      std::size_t client_cap =
          c.limits.client_cap >= 1
              ? 0
              : std::max<std::size_t>(
                    1, static_cast<std::size_t>(
                           c.limits.client_cap *
                           static_cast<double>(std::max<std::size_t>(eps.size(), 1) *
                                               c.pool.max_connections_per_endpoint)));
      std::vector<std::string> addresses;
      for (const auto& e : eps) addresses.push_back(e.address);
      if (!before) {
        balancers.push_back(routing::make_balancer(c));
        balancers.back()->endpoints_changed(addresses, {});
        budgets.emplace_back(c.retries.budget_ratio, floor);
        admissions.push_back(std::make_unique<admission>(
            inflight, pending, c.limits.pending_timeout, client_share, client_cap));
        continue;
      }
      const auto& was = before->clusters[i];
      if (was.balancer != c.balancer || was.latency != c.latency ||
          was.prefix_affinity != c.prefix_affinity) {
        balancers[i] = routing::make_balancer(c);
        balancers[i]->endpoints_changed(addresses, {});
      } else if (moves && moves->changed(i)) {
        balancers[i]->endpoints_changed(addresses, moves->new_of_old[i]);
      }
      budgets[i].configure(c.retries.budget_ratio, floor);
      admissions[i]->configure(inflight, pending, c.limits.pending_timeout, client_share,
                               client_cap);
    }
  }

  boost::asio::io_context& io;
  std::shared_ptr<const snapshot> snap;
  upstream::worker_upstreams ups;
  std::vector<std::unique_ptr<routing::balancer>> balancers;
  std::vector<retry_budget> budgets;
  std::vector<std::unique_ptr<admission>> admissions;
  std::vector<hedge_policy> hedges;  // per route
  common::random_source rng;
  const common::clock* clock;
  metrics::worker_metrics& metrics;
  access_log log;
  buffer_pool buffers;
  // gRPC clusters: the HTTP/2 channel to each endpoint, shared by this worker's calls.
  std::unordered_map<upstream::endpoint_id, std::shared_ptr<upstream::h2_channel>> grpc_channels;
  // Storage: objects' sizes seen in responses, shared by every worker (the snapshot's table).
  object_sizes& sizes() const { return *snap->sizes; }
};

}  // namespace meridian::proxy
