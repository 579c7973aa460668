#include "meridian/proxy/retry_policy.hpp"

#include <cmath>

namespace meridian::proxy {

using common::outcome_kind;

void retry_budget::decay(common::time_point now) {
  if (started_) {
    double dt = common::seconds_between(stamp_, now);
    if (dt > 0) {
      double w = std::exp(-dt / window_);
      requests_ *= w;
      retries_ *= w;
    }
  }
  started_ = true;
  stamp_ = now;
}

void retry_budget::on_request(common::time_point now) {
  decay(now);
  requests_ += 1;
}

bool retry_budget::try_spend(common::time_point now) {
  decay(now);
  if (retries_ + 1 > ratio_ * requests_ + floor_) return false;
  retries_ += 1;
  return true;
}

// The retry_on condition an outcome meets, if any. Connect failures and a connection that
// failed before a request byte went out never reached a backend; a reset after the request went
// out and a 503 may be retried only while the gateway still holds the whole body to send again.
std::optional<retry_condition> retry_policy::condition(const common::outcome& o,
                                                       bool body_held) const {
  if (o.retry_safe())
    return o.kind == outcome_kind::reset_before_request || o.kind == outcome_kind::stale_connection
               ? retry_condition::reset_before_request
               : retry_condition::connect_failure;
  switch (o.kind) {
    case outcome_kind::reset_before_response:
    case outcome_kind::endpoint_down:  // the request went out; no answer came, none will
      if (body_held) return retry_condition::reset_before_response;
      return std::nullopt;
    case outcome_kind::ok:
      if (o.status == 503 && body_held) return retry_condition::status_503;
      return std::nullopt;
    default:
      return std::nullopt;
  }
}

retry_action retry_policy::next(const common::outcome& o, bool candidates_left, bool body_held,
                                common::time_point now) {
  ++attempts_;
  budget_refused_ = false;
  reason_.reset();
  // Never once the client has seen a byte.
  if (o.bytes_to_client > 0) return retry_action::finish;
  // A pooled connection found closed is the pool's failure, not the backend's: one fresh
  // connection to the same endpoint, outside the retry count and budget.
  if (o.kind == outcome_kind::stale_connection && !fresh_used_) {
    fresh_used_ = true;
    --attempts_;
    return retry_action::same_endpoint_fresh;
  }
  auto c = condition(o, body_held);
  if (!c) return retry_action::finish;
  static constexpr unsigned bit[] = {config::retry_connect_failure,
                                     config::retry_reset_before_request,
                                     config::retry_reset_before_response, config::retry_status_503};
  if (!(cfg_.on & bit[static_cast<int>(*c)])) return retry_action::finish;
  if (!candidates_left || attempts_ >= static_cast<int>(cfg_.attempts)) return retry_action::finish;
  if (budget_ && !budget_->try_spend(now)) {
    budget_refused_ = true;
    return retry_action::finish;
  }
  reason_ = c;
  return retry_action::next_candidate;
}

}  // namespace meridian::proxy
