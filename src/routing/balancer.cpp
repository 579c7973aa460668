#include "meridian/routing/balancer.hpp"

#include "meridian/routing/prefix_affinity.hpp"

#include <algorithm>
#include <vector>

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
// miss the one good endpoint among three); larger ones compare a random pair (power of two
// choices), and with prefix affinity also the prompt's rendezvous choice and the endpoint holding
// most of it. In-flight counts taken at the pick keep a burst from herding onto the best one, and
// an endpoint not yet measured is taken to be like those it is compared with. Readings that have
// gone stale add randomness to the comparison. With prefix affinity the cost adds the prefill of
// the prompt blocks an endpoint does not hold.
class latency_aware final : public balancer {
 public:
  explicit latency_aware(const config::cluster_config& c) : p_(cost_params::from(c)) {
    if (c.prefix_affinity.enabled) affinity_ = std::make_unique<prefix_affinity>(c);
  }
  void dispatched(std::uint32_t index, const pick_input& in) override {
    if (affinity_) affinity_->dispatched(index, in.blocks);
  }
  void endpoints_changed(std::span<const std::string> addresses,
                         std::span<const std::uint32_t> new_of_old) override {
    if (affinity_) affinity_->endpoints_changed(addresses, new_of_old);
  }
  std::size_t indexed_blocks(std::uint32_t index) const override {
    return affinity_ ? affinity_->indexed_blocks(index) : 0;
  }
  void forget(std::uint32_t index) override {
    if (affinity_) affinity_->forget(index);
  }

 protected:
  void order(view eps, pick_input& in, candidates& out) override {
    bool prefix = affinity_ && begin_prefix(eps, in, out);
    std::size_t n = eps.size(), m = 0;
    std::array<std::uint32_t, full_scan_max> pool{};
    auto add = [&](std::size_t i) {
      if (i >= n || m == full_scan_max || !eligible(*eps[i], in)) return;
      if (std::find(pool.begin(), pool.begin() + static_cast<std::ptrdiff_t>(m), i) ==
          pool.begin() + static_cast<std::ptrdiff_t>(m))
        pool[m++] = static_cast<std::uint32_t>(i);
    };
    if (n <= full_scan_max) {
      for (std::size_t i = 0; i < n; ++i) add(i);
    } else {
      if (prefix) add(affinity_->preferred()), add(affinity_->best_held());
      auto [a, b] = two_choices(eps, in);
      add(a);
      add(b);
    }
    if (m == 0) return;
    auto like = peers_of(eps, std::span(pool.data(), m), p_, in.now, in.answer_tokens);
    // model: what the cost model adds to the readings for the load an endpoint holds; held: the
    // requests it holds (what decides when the model adds nothing, e.g. no decode slope yet).
    std::array<double, full_scan_max> cost{}, model{}, held{}, noise{}, queue{}, outstanding{};
    std::array<std::int32_t, full_scan_max> uncached{};
    for (std::size_t k = 0; k < m; ++k) {
      uncached[k] = -1;
      const auto& s = *eps[pool[k]];
      auto c = expected_cost(s, p_, in.now, like);
      double stale = s.probe.load_known ? 1 - c.freshness : 0;
      cost[k] = stale > 0 ? c.total * (1 + 0.5 * stale * in.rng.unit()) : c.total;
      model[k] = cost[k] - c.readings;
      held[k] = c.load;
      noise[k] = c.noise;
      queue[k] = c.queue;
      outstanding[k] = c.outstanding;
      // A cold prefill runs in the engine's step: every stream there waits for it too.
      if (prefix) {
        double prefill = affinity_->extra(pool[k], s, uncached[k]);
        double stalled = std::min(c.load, std::max(p_.capacity, s.capacity_seen));
        cost[k] += prefill * (1 + stalled);
        model[k] += prefill * (1 + stalled);
      }
    }
    std::array<std::size_t, full_scan_max> order{};
    for (std::size_t k = 0; k < m; ++k) order[k] = k;
    // Equal costs (nothing measured yet) must not all go to the lowest index.
    std::size_t rot = in.rng.below(m);
    auto end = order.begin() + static_cast<std::ptrdiff_t>(m);
    std::rotate(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(rot), end);
    // Costs within their readings' noise of the cheapest are equal: among those, what the model
    // adds to the readings for the load each holds (and the prefill it lacks) decides, so equal
    // endpoints share the work instead of herding on a few milliseconds of measurement noise;
    // the rest follow by cost.
    std::size_t best =
        *std::min_element(order.begin(), end, [&](auto x, auto y) { return cost[x] < cost[y]; });
    std::array<bool, full_scan_max> near{};
    for (std::size_t k = 0; k < m; ++k)
      near[k] = cost[k] <= cost[best] + std::max({min_margin, relative_margin * cost[best],
                                                  noise[best] + noise[k]});
    std::stable_sort(order.begin(), end, [&](auto x, auto y) {
      if (near[x] != near[y]) return near[x];
      if (!near[x]) return cost[x] < cost[y];
      return model[x] != model[y] ? model[x] < model[y] : held[x] < held[y];
    });
    // A session sticks to its endpoint while that is healthy and within the load bound.
    if (prefix && affinity_->pinned() < n) {
      auto at =
          std::find_if(order.begin(), end, [&](auto k) { return pool[k] == affinity_->pinned(); });
      std::rotate(order.begin(), at, at + 1);
    }
    out.score = cost[order[0]];
    for (std::size_t k = 0; k < m; ++k) {
      out.push(pool[order[k]]);
      out.uncached[k] = uncached[order[k]];
      out.queue[k] = queue[order[k]];
      out.outstanding[k] = outstanding[order[k]];
    }
    if (n > full_scan_max) add_rest(eps, in, out);
    if (prefix) note_spill(out, n);
  }

 private:
  bool begin_prefix(view eps, pick_input& in, candidates& out) {
    eligible_.resize(eps.size());
    for (std::size_t i = 0; i < eps.size(); ++i) eligible_[i] = eligible(*eps[i], in);
    if (!affinity_->begin(eps, in.blocks, in.session, eligible_)) return false;
    out.prompt_blocks = static_cast<std::uint32_t>(affinity_->blocks());
    out.prefix_indexed = affinity_->indexed();
    return true;
  }
  // Whether the endpoint with the most of the prompt lost it: to the load bound or on cost.
  void note_spill(candidates& out, std::size_t n) const {
    auto fav = affinity_->favourite();
    if (out.empty() || fav >= n || out[0] == fav) return;
    out.prefix_spill = affinity_->over(fav) ? candidates::spill::load : candidates::spill::cost;
  }
  static constexpr std::size_t full_scan_max = 4;
  // Costs closer than this to the cheapest count as equal even before any noise is measured.
  static constexpr double min_margin = 0.001, relative_margin = 0.05;
  cost_params p_;
  std::unique_ptr<prefix_affinity> affinity_;
  std::vector<bool> eligible_;
};
// Storage: the expected time to the transfer's last byte (expected_completion), over every
// eligible endpoint (replica sets are small), fewer transfers in flight first among equals. A
// write goes to the first healthy endpoint in the configured order (write_to: first_healthy),
// or in the gateway's zone first (zone_local): writes stay where the operator put them.
class bandwidth_aware final : public balancer {
 public:
  explicit bandwidth_aware(const config::cluster_config& c)
      : p_(cost_params::from(c)), zone_local_(c.write_to == config::write_target::zone_local) {}

 protected:
  void order(view eps, pick_input& in, candidates& out) override {
    const std::size_t n = eps.size();
    if (in.write) {
      for (int pass = zone_local_ ? 0 : 1; pass < 2 && !out.full(); ++pass)
        for (std::size_t i = 0; i < n && !out.full(); ++i)
          if (eligible(*eps[i], in) && (pass == 1 || eps[i]->local_zone))
            out.push(static_cast<std::uint32_t>(i));
      return;
    }
    pool_.clear();
    for (std::size_t i = 0; i < n; ++i)
      if (eligible(*eps[i], in)) pool_.push_back(static_cast<std::uint32_t>(i));
    if (pool_.empty()) return;
    // Equal costs (nothing measured yet) must not all go to the lowest index.
    std::rotate(pool_.begin(),
                pool_.begin() + static_cast<std::ptrdiff_t>(in.rng.below(pool_.size())),
                pool_.end());
    auto like = peer_rate(eps, pool_);
    cost_.resize(n);
    for (auto i : pool_) cost_[i] = expected_completion(*eps[i], p_, in.now, in.bytes, like).total;
    std::stable_sort(pool_.begin(), pool_.end(), [&](auto a, auto b) {
      return cost_[a] != cost_[b] ? cost_[a] < cost_[b] : eps[a]->in_flight < eps[b]->in_flight;
    });
    out.score = cost_[pool_[0]];
    for (auto i : pool_) {
      if (out.full()) break;
      out.push(i);
    }
  }

 private:
  cost_params p_;
  bool zone_local_;
  std::vector<std::uint32_t> pool_;
  std::vector<double> cost_;
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
      return std::make_unique<latency_aware>(c);
    case config::balancer_kind::bandwidth_aware:
      return std::make_unique<bandwidth_aware>(c);
  }
  return std::make_unique<least_request>();
}

}  // namespace meridian::routing
