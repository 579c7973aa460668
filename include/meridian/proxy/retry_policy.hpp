// When to try a request again after an attempt failed, and where: a pure decision over the
// attempt's outcome and the route's retry config, with the cluster's retry budget (no I/O; the
// time comes in). One policy per request, one budget per cluster and worker, on its thread.
#pragma once

#include <optional>

#include "meridian/common/clock.hpp"
#include "meridian/common/error.hpp"
#include "meridian/config/config.hpp"

namespace meridian::proxy {

// Finagle's and Linkerd's retry budget: retries within about the last `window` seconds stay
// under `ratio` times the requests in that time plus `min_per_second` times the window. Both
// counts decay exponentially (time constant `window`), so a burst of failures cannot turn into
// a storm of retries, while a quiet cluster still retries its occasional failure.
class retry_budget {
 public:
  retry_budget(double ratio, double min_per_second, double window_s = 10)
      : ratio_(ratio), floor_(min_per_second * window_s), window_(window_s) {}
  // New figures (a config reload); what was counted stays.
  void configure(double ratio, double min_per_second) {
    ratio_ = ratio;
    floor_ = min_per_second * window_;
  }
  // A request's first attempt.
  void on_request(common::time_point now);
  // Whether one more retry fits; if so it is counted.
  bool try_spend(common::time_point now);
  double requests() const { return requests_; }
  double retries() const { return retries_; }

 private:
  void decay(common::time_point now);
  double ratio_, floor_, window_;
  double requests_ = 0, retries_ = 0;
  common::time_point stamp_{};
  bool started_ = false;
};

enum class retry_action {
  finish,               // the outcome stands (success, or a failure to report)
  same_endpoint_fresh,  // a pooled connection was stale: same endpoint, new connection
  next_candidate,       // a retry the config allows and the budget affords: the next endpoint
};

// What failed before a retry (the retry_on conditions).
enum class retry_condition {
  connect_failure,
  reset_before_request,
  reset_before_response,
  status_503
};

class retry_policy {
 public:
  retry_policy(const config::retry_config& c, retry_budget* budget) : cfg_(c), budget_(budget) {}

  // Called once per finished attempt. `o` is its outcome; an ok outcome with status 503 is a
  // 503 head not yet relayed. `candidates_left`: another endpoint remains; `body_held`: the
  // request body is still whole in the gateway's buffer, so it can be sent again.
  retry_action next(const common::outcome& o, bool candidates_left, bool body_held,
                    common::time_point now);
  int attempts() const { return attempts_; }
  // Why the last next_candidate was chosen.
  std::optional<retry_condition> reason() const { return reason_; }
  // The last finish came from the budget: the config would have retried.
  bool budget_refused() const { return budget_refused_; }

 private:
  std::optional<retry_condition> condition(const common::outcome& o, bool body_held) const;

  config::retry_config cfg_;
  retry_budget* budget_;
  int attempts_ = 0;
  bool fresh_used_ = false;
  bool budget_refused_ = false;
  std::optional<retry_condition> reason_;
};

}  // namespace meridian::proxy
