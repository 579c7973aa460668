#include <unordered_map>

#include "meridian/upstream/cluster.hpp"

namespace meridian::upstream {
namespace {
constexpr auto recheck_after_idle = std::chrono::seconds(1);

void close_idle(endpoint_state& ep) {
  for (auto& pc : ep.idle) {
    pc.conn.close();
    --ep.open;
  }
  ep.idle.clear();
}
}  // namespace

worker_upstreams::worker_upstreams(std::shared_ptr<const topology> topo, unsigned worker)
    : worker_(worker) {
  apply(std::move(topo));
}

endpoint_moves worker_upstreams::apply(std::shared_ptr<const topology> topo) {
  std::lock_guard structure(structure_mu_);
  struct was {
    std::shared_ptr<endpoint_state> ep;
    std::size_t cluster, position;
  };
  std::unordered_map<endpoint_id, was> old;
  endpoint_moves moves;
  moves.new_of_old.resize(topo->clusters.size());
  for (std::size_t c = 0; c < clusters_.size(); ++c) {
    auto& eps = clusters_[c].endpoints;
    if (c < moves.new_of_old.size()) moves.new_of_old[c].assign(eps.size(), endpoint_moves::gone);
    for (std::size_t e = 0; e < eps.size(); ++e) {
      auto id = eps[e]->info->id;  // before the move: argument order is unspecified
      old.emplace(id, was{std::move(eps[e]), c, e});
    }
  }
  std::vector<cluster_state> fresh(topo->clusters.size());
  for (std::size_t c = 0; c < topo->clusters.size(); ++c) {
    auto& cs = fresh[c];
    cs.info = &topo->clusters[c];
    if (c < clusters_.size()) {
      cs.prefill = clusters_[c].prefill;
      cs.batch_fit = clusters_[c].batch_fit;
      cs.answer_tokens = clusters_[c].answer_tokens;
    }
    for (const auto& info : cs.info->endpoints) {
      std::shared_ptr<endpoint_state> ep;
      if (auto it = old.find(info.id); it != old.end()) {
        ep = std::move(it->second.ep);
        if (it->second.cluster == c)
          moves.new_of_old[c][it->second.position] =
              static_cast<std::uint32_t>(cs.endpoints.size());
        old.erase(it);
        // Same endpoint, new address (DNS): pooled connections lead to the old one.
        if (ep->info->resolved != info.resolved) close_idle(*ep);
      } else {
        ep = std::make_shared<endpoint_state>();
      }
      ep->owner = topo;
      ep->info = &info;
      ep->metrics = &info.series->worker(worker_);
      ep->pool = cs.info->pool;
      ep->stats.local_zone = info.local_zone;
      ep->stats.board = info.board.get();
      ep->stats.worker = worker_;
      cs.stats_view.push_back(&ep->stats);
      cs.endpoints.push_back(std::move(ep));
    }
  }
  // Endpoints that left: their busy connections close when they come back.
  for (auto& [id, w] : old) {
    close_idle(*w.ep);
    w.ep->retired = true;
  }
  // A cluster whose endpoints are the same ones in the same order has not moved.
  moves.moved.assign(fresh.size(), true);
  for (std::size_t c = 0; c < fresh.size(); ++c) {
    const auto& m = moves.new_of_old[c];
    bool same = c < clusters_.size() && m.size() == fresh[c].endpoints.size();
    for (std::size_t e = 0; same && e < m.size(); ++e) same = m[e] == e;
    moves.moved[c] = !same;
  }
  clusters_ = std::move(fresh);
  topo_ = std::move(topo);
  return moves;
}

std::optional<link> worker_upstreams::take_idle(endpoint_state& ep, common::time_point now) {
  while (!ep.idle.empty()) {
    pooled_connection pc = std::move(ep.idle.back());
    ep.idle.pop_back();
    auto idle_for = now - pc.idle_since;
    // Checking costs a syscall, so only connections idle long enough for a backend's keep-alive
    // timer to have closed them are checked; a fresh one that fails is retried by the proxy
    // when its request can be replayed.
    if (idle_for < ep.pool.idle_timeout &&
        (idle_for < recheck_after_idle || pc.conn.still_usable()))
      return std::move(pc.conn);
    pc.conn.close();
    --ep.open;
  }
  return std::nullopt;
}

void worker_upstreams::release(endpoint_state& ep, link conn, common::time_point now) {
  if (ep.retired || ep.idle.size() >= ep.pool.max_idle_per_endpoint) {
    conn.close();
    --ep.open;
    return;
  }
  ep.idle.push_back({std::move(conn), now});
}

bool worker_upstreams::may_open(const endpoint_state& ep) const {
  return ep.open < ep.pool.max_connections_per_endpoint;
}

void worker_upstreams::prune(common::time_point now) {
  for (auto& cs : clusters_) {
    for (auto& ep : cs.endpoints) {
      std::size_t kept = 0;
      for (auto& pc : ep->idle) {
        if (now - pc.idle_since < ep->pool.idle_timeout && pc.conn.still_usable()) {
          if (&ep->idle[kept] != &pc) ep->idle[kept] = std::move(pc);
          ++kept;
        } else {
          pc.conn.close();
          --ep->open;
        }
      }
      ep->idle.erase(ep->idle.begin() + static_cast<std::ptrdiff_t>(kept), ep->idle.end());
    }
  }
}

void worker_upstreams::close_all_idle() {
  for (auto& cs : clusters_)
    for (auto& ep : cs.endpoints) close_idle(*ep);
}

}  // namespace meridian::upstream
