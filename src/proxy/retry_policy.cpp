#include "meridian/proxy/retry_policy.hpp"

namespace meridian::proxy {

retry_action retry_policy::next(const common::outcome& o, bool candidates_left) {
  ++attempts_;
  // Never once the client has seen a byte, never when the request may have reached a backend.
  if (o.ok() || !o.retry_safe || o.bytes_to_client > 0 || attempts_ >= max_attempts_)
    return retry_action::finish;
  if (o.kind == common::outcome_kind::stale_connection) {
    if (fresh_used_) return retry_action::finish;
    fresh_used_ = true;
    return retry_action::same_endpoint_fresh;
  }
  return candidates_left ? retry_action::next_candidate : retry_action::finish;
}

}  // namespace meridian::proxy
