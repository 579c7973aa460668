// When to hedge a request (send it also to the next candidate because no first token came) and
// whether the route can afford it: a pure decision over the route's hedge config, its recent
// times to first byte and a budget (no I/O; the time comes in). One per route and worker, on its
// thread.
#pragma once

#include <array>
#include <optional>

#include "meridian/common/clock.hpp"
#include "meridian/config/config.hpp"
#include "meridian/proxy/retry_policy.hpp"

namespace meridian::proxy {

class hedge_policy {
 public:
  static constexpr std::size_t window = 256;      // recent first-byte times kept
  static constexpr std::size_t min_samples = 20;  // before a percentile is trusted

  explicit hedge_policy(const config::hedge_config& c = {}) { configure(c); }
  // New figures (a config reload); the samples and the budget's counts stay.
  void configure(const config::hedge_config& c);
  bool enabled() const { return cfg_.enabled; }

  // A request on the route (the budget's base).
  void on_request(common::time_point now) { budget_.on_request(now); }
  // When a request whose first attempt went out at `start` is hedged if it has no answer;
  // nullopt when it is not: hedging off, or too few samples yet for a percentile.
  std::optional<common::time_point> hedge_at(common::time_point start);
  // Whether a hedge fits the budget (max_extra of the requests); if so it is counted.
  bool try_spend(common::time_point now) { return budget_.try_spend(now); }
  // An attempt's first response byte came `seconds` after it went out.
  void observe(double seconds);
  // The delay now in force, in seconds (-1: none yet).
  double delay() const;

 private:
  config::hedge_config cfg_;
  retry_budget budget_{0.05, 0};
  std::array<double, window> ring_{};
  std::size_t count_ = 0, next_ = 0;
  mutable std::size_t since_ = 0;  // samples since the percentile was computed
  mutable double cached_ = -1;     // the percentile (-1: to compute)
};

}  // namespace meridian::proxy
