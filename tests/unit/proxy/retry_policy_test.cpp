#include "meridian/proxy/retry_policy.hpp"

#include <doctest/doctest.h>

using namespace meridian;
using common::outcome;
using common::outcome_kind;
using proxy::retry_action;

namespace {
outcome failed(outcome_kind k, bool safe, std::uint64_t sent = 0) {
  outcome o;
  o.kind = k;
  o.retry_safe = safe;
  o.bytes_to_client = sent;
  return o;
}
}  // namespace

TEST_CASE("success and unsafe failures finish") {
  proxy::retry_policy p;
  CHECK(p.next(outcome{}, true) == retry_action::finish);
  proxy::retry_policy q;
  // The backend may have started on it: never sent twice.
  CHECK(q.next(failed(outcome_kind::reset_before_response, false), true) == retry_action::finish);
  CHECK(q.next(failed(outcome_kind::response_timeout, false), true) == retry_action::finish);
}

TEST_CASE("a connect failure moves to the next candidate while one remains") {
  proxy::retry_policy p;
  CHECK(p.next(failed(outcome_kind::connect_failed, true), true) == retry_action::next_candidate);
  CHECK(p.next(failed(outcome_kind::connect_timeout, true), false) == retry_action::finish);
  CHECK(p.attempts() == 2);
}

TEST_CASE("a stale pooled connection is retried once on a fresh one to the same endpoint") {
  proxy::retry_policy p;
  auto stale = failed(outcome_kind::stale_connection, true);
  CHECK(p.next(stale, false) == retry_action::same_endpoint_fresh);
  CHECK(p.next(stale, false) == retry_action::finish);
}

TEST_CASE("attempts are capped and nothing is retried once the client saw a byte") {
  proxy::retry_policy p(2);
  auto refused = failed(outcome_kind::connect_failed, true);
  CHECK(p.next(refused, true) == retry_action::next_candidate);
  CHECK(p.next(refused, true) == retry_action::finish);
  proxy::retry_policy q;
  CHECK(q.next(failed(outcome_kind::connect_failed, true, 10), true) == retry_action::finish);
}
