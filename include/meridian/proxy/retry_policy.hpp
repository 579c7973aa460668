// When to try a request again after an attempt failed, and where: a pure decision over the
// attempt's outcome (no I/O, no clock), one instance per request on its worker thread.
#pragma once

#include "meridian/common/error.hpp"

namespace meridian::proxy {

enum class retry_action {
  finish,               // the outcome stands (success, or a failure to report)
  same_endpoint_fresh,  // a pooled connection was stale: same endpoint, new connection
  next_candidate,       // nothing reached the backend: the next endpoint in the pick order
};

class retry_policy {
 public:
  explicit retry_policy(int max_attempts = 3) : max_attempts_(max_attempts) {}

  // Called once per finished attempt; `candidates_left` says whether another endpoint remains.
  retry_action next(const common::outcome& o, bool candidates_left);
  int attempts() const { return attempts_; }

 private:
  int max_attempts_;
  int attempts_ = 0;
  bool fresh_used_ = false;
};

}  // namespace meridian::proxy
