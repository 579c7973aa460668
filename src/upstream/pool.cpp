#include <sys/socket.h>

#include <cerrno>
#include <unordered_map>

#include "meridian/upstream/cluster.hpp"

namespace meridian::upstream {
namespace {
constexpr auto recheck_after_idle = std::chrono::seconds(1);

// An idle keep-alive connection must have nothing to read: EOF means the backend closed it,
// bytes mean it broke protocol. Either way it cannot carry a request.
bool still_usable(boost::asio::ip::tcp::socket& s) {
  char c;
  ssize_t n = ::recv(s.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

void close_idle(endpoint_state& ep) {
  for (auto& pc : ep.idle) {
    boost::system::error_code ignored;
    pc.socket.close(ignored);
    --ep.open;
  }
  ep.idle.clear();
}
}  // namespace

worker_upstreams::worker_upstreams(std::shared_ptr<const topology> topo) {
  apply(std::move(topo));
}

void worker_upstreams::apply(std::shared_ptr<const topology> topo) {
  std::lock_guard structure(structure_mu_);
  std::unordered_map<endpoint_id, std::shared_ptr<endpoint_state>> old;
  for (auto& cs : clusters_)
    for (auto& ep : cs.endpoints) old.emplace(ep->info->id, std::move(ep));
  std::vector<cluster_state> fresh(topo->clusters.size());
  for (std::size_t c = 0; c < topo->clusters.size(); ++c) {
    auto& cs = fresh[c];
    cs.info = &topo->clusters[c];
    for (const auto& info : cs.info->endpoints) {
      std::shared_ptr<endpoint_state> ep;
      if (auto it = old.find(info.id); it != old.end()) {
        ep = std::move(it->second);
        old.erase(it);
        // Same endpoint, new address (DNS): pooled connections lead to the old one.
        if (ep->info->resolved != info.resolved) close_idle(*ep);
      } else {
        ep = std::make_shared<endpoint_state>();
      }
      ep->owner = topo;
      ep->info = &info;
      ep->pool = cs.info->pool;
      ep->stats.local_zone = info.local_zone;
      cs.stats_view.push_back(&ep->stats);
      cs.endpoints.push_back(std::move(ep));
    }
  }
  // Endpoints that left: their busy connections close when they come back.
  for (auto& [id, ep] : old) {
    close_idle(*ep);
    ep->retired = true;
  }
  clusters_ = std::move(fresh);
  topo_ = std::move(topo);
}

std::optional<boost::asio::ip::tcp::socket> worker_upstreams::take_idle(
    endpoint_state& ep, std::chrono::steady_clock::time_point now) {
  while (!ep.idle.empty()) {
    pooled_connection pc = std::move(ep.idle.back());
    ep.idle.pop_back();
    auto idle_for = now - pc.idle_since;
    // Checking costs a syscall, so only connections idle long enough for a backend's keep-alive
    // timer to have closed them are checked; a fresh one that fails is retried by the proxy
    // when its request can be replayed.
    if (idle_for < ep.pool.idle_timeout &&
        (idle_for < recheck_after_idle || still_usable(pc.socket)))
      return std::move(pc.socket);
    boost::system::error_code ignored;
    pc.socket.close(ignored);
    --ep.open;
  }
  return std::nullopt;
}

void worker_upstreams::release(endpoint_state& ep, boost::asio::ip::tcp::socket socket,
                               std::chrono::steady_clock::time_point now) {
  if (ep.retired || ep.idle.size() >= ep.pool.max_idle_per_endpoint) {
    boost::system::error_code ignored;
    socket.close(ignored);
    --ep.open;
    return;
  }
  ep.idle.push_back({std::move(socket), now});
}

bool worker_upstreams::may_open(const endpoint_state& ep) const {
  return ep.open < ep.pool.max_connections_per_endpoint;
}

void worker_upstreams::prune(std::chrono::steady_clock::time_point now) {
  for (auto& cs : clusters_) {
    for (auto& ep : cs.endpoints) {
      std::size_t kept = 0;
      for (auto& pc : ep->idle) {
        if (now - pc.idle_since < ep->pool.idle_timeout && still_usable(pc.socket)) {
          if (&ep->idle[kept] != &pc) ep->idle[kept] = std::move(pc);
          ++kept;
        } else {
          boost::system::error_code ignored;
          pc.socket.close(ignored);
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
