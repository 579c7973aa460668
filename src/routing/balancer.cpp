#include "meridian/routing/balancer.hpp"

#include <algorithm>

namespace meridian::routing {

std::string_view to_string(pick_reason r) {
  switch (r) {
    case pick_reason::score:
      return "score";
    case pick_reason::round_robin:
      return "round_robin";
    case pick_reason::least_request:
      return "least_request";
    case pick_reason::panic:
      return "panic";
    case pick_reason::count_:
      break;
  }
  return "score";
}

using view = std::span<const upstream::endpoint_stats* const>;

std::pair<std::size_t, std::size_t> balancer::two_choices(view eps, pick_input& in) {
  std::size_t n = eps.size();
  // A few random draws find eligible endpoints at once in a mostly healthy cluster; the scan
  // after them keeps the result right when most are not.
  std::size_t a = n, b = n;
  for (int tries = 0; tries < 4 && a == n; ++tries) {
    std::size_t i = in.rng.below(n);
    if (eligible(*eps[i], in)) a = i;
  }
  if (a == n) {
    std::size_t start = in.rng.below(n);
    for (std::size_t k = 0; k < n && a == n; ++k)
      if (eligible(*eps[(start + k) % n], in)) a = (start + k) % n;
    if (a == n) return {n, n};
  }
  for (int tries = 0; tries < 4 && b == n && n > 1; ++tries) {
    std::size_t i = (a + 1 + in.rng.below(n - 1)) % n;
    if (eligible(*eps[i], in)) b = i;
  }
  if (b == n) {
    std::size_t start = in.rng.below(n);
    for (std::size_t k = 0; k < n && b == n; ++k) {
      std::size_t i = (start + k) % n;
      if (i != a && eligible(*eps[i], in)) b = i;
    }
  }
  return {a, b};
}

void balancer::add_rest(view eps, pick_input& in, candidates& out) {
  std::size_t n = eps.size();
  std::size_t start = in.rng.below(n);
  for (std::size_t k = 0; k < n && !out.full(); ++k) {
    std::size_t i = (start + k) % n;
    if (eligible(*eps[i], in)) out.push(static_cast<std::uint32_t>(i));
  }
}

candidates balancer::pick(view eps, pick_input& in) {
  candidates out;
  if (eps.empty()) return out;
  order(eps, in, out);
  if (out.empty()) {
    // Panic: no healthy endpoint serves it. Any endpoint that serves the model, in random order.
    std::size_t n = eps.size();
    std::size_t start = in.rng.below(n);
    for (std::size_t k = 0; k < n && !out.full(); ++k) {
      std::size_t i = (start + k) % n;
      if (in.model.empty() || upstream::serves(eps[i]->probe.models.get(), in.model))
        out.push(static_cast<std::uint32_t>(i));
    }
    out.reason = pick_reason::panic;
    out.score = -1;
  }
  return out;
}

namespace {
class round_robin final : public balancer {
 protected:
  void order(view eps, pick_input& in, candidates& out) override {
    std::size_t n = eps.size();
    std::size_t start = next_++ % n;
    for (std::size_t k = 0; k < n && !out.full(); ++k) {
      std::size_t i = (start + k) % n;
      if (eligible(*eps[i], in)) out.push(static_cast<std::uint32_t>(i));
    }
    out.reason = pick_reason::round_robin;
  }

 private:
  std::size_t next_ = 0;
};

// Power of two choices (Mitzenmacher) over a cost: two random eligible endpoints, the cheaper
// first and the other as the fallback, then one more at random for a second retry. Avoids the
// herd that a global scan sends to one endpoint whose numbers look best, and costs the same at
// 8 or 8,000 endpoints.
class two_choice_balancer : public balancer {
 protected:
  virtual double cost_of(const upstream::endpoint_stats& s, pick_input& in) = 0;
  void order(view eps, pick_input& in, candidates& out) override {
    auto [a, b] = two_choices(eps, in);
    if (a == eps.size()) return;
    if (b != eps.size()) {
      double ca = cost_of(*eps[a], in), cb = cost_of(*eps[b], in);
      bool a_first = ca != cb ? ca < cb : in.rng.below(2) == 0;
      if (!a_first) std::swap(a, b), std::swap(ca, cb);
      out.score = ca;
      out.push(static_cast<std::uint32_t>(a));
      out.push(static_cast<std::uint32_t>(b));
    } else {
      out.score = cost_of(*eps[a], in);
      out.push(static_cast<std::uint32_t>(a));
    }
    add_rest(eps, in, out);
  }
};

class least_request final : public two_choice_balancer {
 protected:
  double cost_of(const upstream::endpoint_stats& s, pick_input&) override { return s.in_flight; }
  void order(view eps, pick_input& in, candidates& out) override {
    two_choice_balancer::order(eps, in, out);
    out.reason = pick_reason::least_request;
    out.score = -1;
  }
};

class peak_ewma final : public two_choice_balancer {
 public:
  explicit peak_ewma(cost_params p) : p_(p) {}

 protected:
  double cost_of(const upstream::endpoint_stats& s, pick_input& in) override {
    return peak_ewma_cost(s, p_, in.now);
  }

 private:
  cost_params p_;
};

// Expected time to first token. Small clusters are scanned whole (P2C's random pair would often
// miss the one good endpoint among three); in-flight counts taken at the pick keep a burst from
// herding onto the best one. Readings that have gone stale add randomness to the comparison.
class latency_aware final : public two_choice_balancer {
 public:
  explicit latency_aware(cost_params p) : p_(p) {}

 protected:
  double cost_of(const upstream::endpoint_stats& s, pick_input& in) override {
    auto c = expected_ttft(s, p_, in.now);
    double stale = s.probe.load_known ? 1 - c.freshness : 0;
    return stale > 0 ? c.total * (1 + 0.5 * stale * in.rng.unit()) : c.total;
  }
  void order(view eps, pick_input& in, candidates& out) override {
    if (eps.size() > full_scan_max) return two_choice_balancer::order(eps, in, out);
    std::array<std::pair<double, std::uint32_t>, full_scan_max> scored{};
    std::size_t m = 0;
    for (std::size_t i = 0; i < eps.size(); ++i)
      if (eligible(*eps[i], in))
        scored[m++] = {cost_of(*eps[i], in), static_cast<std::uint32_t>(i)};
    if (m == 0) return;
    // Equal costs (nothing measured yet) must not all go to the lowest index.
    std::size_t rot = in.rng.below(m);
    std::rotate(scored.begin(), scored.begin() + static_cast<std::ptrdiff_t>(rot),
                scored.begin() + static_cast<std::ptrdiff_t>(m));
    std::stable_sort(scored.begin(), scored.begin() + static_cast<std::ptrdiff_t>(m),
                     [](const auto& x, const auto& y) { return x.first < y.first; });
    out.score = scored[0].first;
    for (std::size_t k = 0; k < m && !out.full(); ++k) out.push(scored[k].second);
  }

 private:
  static constexpr std::size_t full_scan_max = 4;
  cost_params p_;
};
}  // namespace

std::unique_ptr<balancer> make_balancer(const config::cluster_config& c) {
  switch (c.balancer) {
    case config::balancer_kind::round_robin:
      return std::make_unique<round_robin>();
    case config::balancer_kind::least_request:
      return std::make_unique<least_request>();
    case config::balancer_kind::peak_ewma:
      return std::make_unique<peak_ewma>(cost_params::from(c));
    case config::balancer_kind::latency_aware:
      return std::make_unique<latency_aware>(cost_params::from(c));
  }
  return std::make_unique<least_request>();
}

}  // namespace meridian::routing
