// TTFT hedging: a request's try races a second one on the next candidate once the first has
// gone `hedge_at` without an answer. Worker thread only.
#pragma once

#include <boost/asio/awaitable.hpp>

#include "meridian/proxy/hedge_policy.hpp"
#include "meridian/routing/balancer.hpp"
#include "proxy/request.hpp"

namespace meridian::proxy {

struct race_result {
  common::outcome outcome;
  std::size_t last = 0;    // the last candidate tried
  bool hedge_won = false;  // the hedge answered before the first try
};

// Runs candidate `k` of `picks` in r.at and, if it has not answered by `hedge_at` and the route's
// budget (`policy`) allows, candidate k + 1 beside it. The first answer (a response head and the
// first body byte, not a 5xx) wins and the other try is cancelled at once; with no answer the
// last try to end gives the outcome. The winner is left in r.at. The request body must be whole
// in the client's buffer (both tries send it from there) and already checked.
boost::asio::awaitable<race_result> race(request& r, const routing::candidates& picks,
                                         const routing::pick_input& in, std::size_t k,
                                         common::time_point hedge_at, hedge_policy& policy);

}  // namespace meridian::proxy
