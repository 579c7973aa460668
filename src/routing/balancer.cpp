#include "meridian/routing/balancer.hpp"

namespace meridian::routing {
namespace {
class round_robin final : public balancer {
 protected:
  void order(std::span<const upstream::endpoint_stats* const> eps, common::random_source&,
             candidates& out) override {
    std::size_t n = eps.size();
    std::size_t start = next_++ % n;
    for (std::size_t k = 0; k < n && out.size() < candidates::capacity; ++k) {
      std::size_t i = (start + k) % n;
      if (eps[i]->healthy) out.push(static_cast<std::uint32_t>(i));
    }
  }

 private:
  std::size_t next_ = 0;
};

// Power of two choices (Mitzenmacher): two random candidates, the one with fewer requests in
// flight wins and the other is the fallback. Avoids the herd that a global least-request scan
// sends to one fresh endpoint.
class least_request final : public balancer {
 protected:
  void order(std::span<const upstream::endpoint_stats* const> eps, common::random_source& rng,
             candidates& out) override {
    std::size_t n = eps.size();
    std::size_t a = rng.below(n);
    std::size_t b = n > 1 ? (a + 1 + rng.below(n - 1)) % n : a;
    bool ua = eps[a]->healthy, ub = eps[b]->healthy;
    if (ua && ub) {
      bool a_first = eps[a]->in_flight != eps[b]->in_flight ? eps[a]->in_flight < eps[b]->in_flight
                                                            : rng.below(2) == 0;
      out.push(static_cast<std::uint32_t>(a_first ? a : b));
      out.push(static_cast<std::uint32_t>(a_first ? b : a));
      return;
    }
    if (ua) out.push(static_cast<std::uint32_t>(a));
    if (ub) out.push(static_cast<std::uint32_t>(b));
    // A draw hit an unhealthy endpoint: add the least loaded healthy one.
    std::size_t best = n;
    for (std::size_t i = 0; i < n; ++i)
      if (eps[i]->healthy && i != a && i != b &&
          (best == n || eps[i]->in_flight < eps[best]->in_flight))
        best = i;
    if (best != n) out.push(static_cast<std::uint32_t>(best));
  }
};
}  // namespace

candidates balancer::pick(std::span<const upstream::endpoint_stats* const> eps,
                          common::random_source& rng) {
  candidates out;
  if (eps.empty()) return out;
  order(eps, rng, out);
  if (out.empty()) {
    std::size_t n = eps.size();
    std::size_t start = rng.below(n);
    for (std::size_t k = 0; k < n && out.size() < candidates::capacity; ++k)
      out.push(static_cast<std::uint32_t>((start + k) % n));
  }
  return out;
}

std::unique_ptr<balancer> make_balancer(config::balancer_kind kind) {
  switch (kind) {
    case config::balancer_kind::round_robin:
      return std::make_unique<round_robin>();
    case config::balancer_kind::least_request:
      return std::make_unique<least_request>();
  }
  return std::make_unique<least_request>();
}

}  // namespace meridian::routing
