#include "meridian/routing/balancer.hpp"

namespace meridian::routing {
namespace {
bool usable(const upstream::endpoint_stats* e, std::size_t i, std::size_t exclude) {
  return e->healthy && i != exclude;
}

class round_robin final : public balancer {
 public:
  std::size_t pick(std::span<const upstream::endpoint_stats* const> eps, std::size_t exclude,
                   common::random_source&) override {
    for (std::size_t tries = 0; tries < eps.size(); ++tries) {
      std::size_t i = next_++ % eps.size();
      if (usable(eps[i], i, exclude)) return i;
    }
    return no_endpoint;
  }

 private:
  std::size_t next_ = 0;
};

// Power of two choices (Mitzenmacher): two random candidates, the one with fewer requests in
// flight wins. Avoids the herd that a global least-request scan sends to one fresh endpoint.
class least_request final : public balancer {
 public:
  std::size_t pick(std::span<const upstream::endpoint_stats* const> eps, std::size_t exclude,
                   common::random_source& rng) override {
    std::size_t n = eps.size();
    if (n == 0) return no_endpoint;
    std::size_t a = rng.below(n);
    std::size_t b = n > 1 ? (a + 1 + rng.below(n - 1)) % n : a;
    bool ua = usable(eps[a], a, exclude);
    bool ub = usable(eps[b], b, exclude);
    if (ua && ub) {
      if (eps[a]->in_flight != eps[b]->in_flight)
        return eps[a]->in_flight < eps[b]->in_flight ? a : b;
      return rng.below(2) ? a : b;
    }
    if (ua) return a;
    if (ub) return b;
    // Both draws unusable: fall back to the least loaded usable endpoint, if any.
    std::size_t best = no_endpoint;
    for (std::size_t i = 0; i < n; ++i)
      if (usable(eps[i], i, exclude) &&
          (best == no_endpoint || eps[i]->in_flight < eps[best]->in_flight))
        best = i;
    return best;
  }
};
}  // namespace

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
