#include "meridian/proxy/retry_policy.hpp"

#include <doctest/doctest.h>

using namespace meridian;
using namespace std::chrono_literals;
using common::outcome;
using common::outcome_kind;
using proxy::retry_action;
using proxy::retry_condition;

namespace {
const common::time_point t0 = common::time_point{} + 1h;

outcome failed(outcome_kind k, std::uint64_t sent = 0) {
  outcome o;
  o.kind = k;
  o.bytes_to_client = sent;
  return o;
}
outcome status(int s) {
  outcome o;
  o.status = s;
  return o;
}
config::retry_config all_on(unsigned attempts = 3) {
  config::retry_config c;
  c.attempts = attempts;
  c.on = config::retry_connect_failure | config::retry_reset_before_request |
         config::retry_reset_before_response | config::retry_status_503;
  return c;
}
}  // namespace

TEST_CASE("success and failures outside the config finish") {
  config::retry_config defaults;  // connect_failure and reset_before_request
  proxy::retry_policy p(defaults, nullptr);
  CHECK(p.next(outcome{}, true, true, t0) == retry_action::finish);
  CHECK(p.next(status(503), true, true, t0) == retry_action::finish);
  // The backend may have started on it: not sent twice unless the route opted in.
  CHECK(p.next(failed(outcome_kind::reset_before_response), true, true, t0) ==
        retry_action::finish);
  CHECK(p.next(failed(outcome_kind::response_timeout), true, true, t0) == retry_action::finish);
}

TEST_CASE("a connect failure moves to the next candidate while one remains") {
  proxy::retry_policy p(config::retry_config{}, nullptr);
  CHECK(p.next(failed(outcome_kind::connect_failed), true, false, t0) ==
        retry_action::next_candidate);
  CHECK(p.reason() == retry_condition::connect_failure);
  CHECK(p.next(failed(outcome_kind::connect_timeout), false, false, t0) == retry_action::finish);
  CHECK(p.attempts() == 2);
  // A failed first write on a fresh connection reached no backend either.
  proxy::retry_policy q(config::retry_config{}, nullptr);
  CHECK(q.next(failed(outcome_kind::reset_before_request), true, false, t0) ==
        retry_action::next_candidate);
  CHECK(q.reason() == retry_condition::reset_before_request);
}

TEST_CASE("a stale pooled connection gets one fresh connection, outside the count") {
  proxy::retry_policy p(config::retry_config{}, nullptr);
  auto stale = failed(outcome_kind::stale_connection);
  CHECK(p.next(stale, true, true, t0) == retry_action::same_endpoint_fresh);
  CHECK(p.attempts() == 0);
  // Stale again: the endpoint's connections fail before the request; another endpoint.
  CHECK(p.next(stale, true, true, t0) == retry_action::next_candidate);
  CHECK(p.next(stale, false, true, t0) == retry_action::finish);
}

TEST_CASE("opted-in resets after the request and 503s are retried only with the body held") {
  proxy::retry_policy p(all_on(), nullptr);
  CHECK(p.next(status(503), true, true, t0) == retry_action::next_candidate);
  CHECK(p.reason() == retry_condition::status_503);
  CHECK(p.next(failed(outcome_kind::reset_before_response), true, true, t0) ==
        retry_action::next_candidate);
  CHECK(p.reason() == retry_condition::reset_before_response);
  // Three tries in all.
  CHECK(p.next(status(503), true, true, t0) == retry_action::finish);
}

TEST_CASE("attempts are capped and nothing is retried once the client saw a byte") {
  proxy::retry_policy p(all_on(2), nullptr);
  auto refused = failed(outcome_kind::connect_failed);
  CHECK(p.next(refused, true, true, t0) == retry_action::next_candidate);
  CHECK(p.next(refused, true, true, t0) == retry_action::finish);
  proxy::retry_policy q(all_on(), nullptr);
  CHECK(q.next(failed(outcome_kind::connect_failed, 10), true, true, t0) == retry_action::finish);
  CHECK(q.next(failed(outcome_kind::reset_during_response, 10), true, true, t0) ==
        retry_action::finish);
  // A body the gateway no longer holds whole is never sent again.
  proxy::retry_policy r(all_on(), nullptr);
  CHECK(r.next(status(503), true, false, t0) == retry_action::finish);
  CHECK(r.next(failed(outcome_kind::reset_before_response), true, false, t0) ==
        retry_action::finish);
}

TEST_CASE("the budget lets through its floor, then a share of the requests") {
  // 20% of requests plus 1 a second over a 10 s window: a floor of 10 retries.
  proxy::retry_budget b(0.2, 1, 10);
  int allowed = 0;
  for (int i = 0; i < 50; ++i) allowed += b.try_spend(t0);
  CHECK(allowed == 10);
  // 100 requests buy 20 more.
  for (int i = 0; i < 100; ++i) b.on_request(t0);
  allowed = 0;
  for (int i = 0; i < 50; ++i) allowed += b.try_spend(t0);
  CHECK(allowed == 20);
  // Spent retries fade with time: after a window, about 1/e of them still count.
  CHECK_FALSE(b.try_spend(t0));
  CHECK(b.try_spend(t0 + 10s));
  CHECK(b.retries() == doctest::Approx(30 * 0.3679 + 1).epsilon(0.01));
}

TEST_CASE("a spent budget finishes the request and says so") {
  proxy::retry_budget b(0.0, 0.1, 10);  // a floor of one retry
  config::retry_config c;
  proxy::retry_policy p(c, &b);
  CHECK(p.next(failed(outcome_kind::connect_failed), true, false, t0) ==
        retry_action::next_candidate);
  CHECK_FALSE(p.budget_refused());
  proxy::retry_policy q(c, &b);
  CHECK(q.next(failed(outcome_kind::connect_failed), true, false, t0) == retry_action::finish);
  CHECK(q.budget_refused());
}
