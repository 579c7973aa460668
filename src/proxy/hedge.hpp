// TTFT hedging: a request's try races a second one on the next candidate once the first has
// gone `hedge_at` without an answer. Worker thread only.
#pragma once

#include <boost/asio/awaitable.hpp>

#include <functional>

#include "meridian/proxy/hedge_policy.hpp"
#include "proxy/context.hpp"

namespace meridian::proxy {

// Sets `at` up for a try of the request on candidate k (a hedge or not) and returns that endpoint.
using start_try = std::function<upstream::endpoint_ref(attempt& at, std::size_t k, bool hedge)>;

struct race_result {
  common::outcome outcome;
  std::size_t last = 0;    // the last candidate tried
  bool hedge_won = false;  // the hedge answered before the first try
};

// Runs candidate `k` in st.at and, if it has not answered by `hedge_at` and the route's budget
// allows, candidate k + 1 beside it. The first answer (a response head and the first body byte,
// not a 5xx) wins and the other try is cancelled at once; with no answer the last try to end
// gives the outcome. The winner is left in st.at. The request body must be whole in the
// client's buffer (both tries send it from there) and already checked.
boost::asio::awaitable<race_result> race(http::connection& c, worker_context& w, conn_state& st,
                                         const start_try& start, std::size_t k, bool has_next,
                                         common::time_point hedge_at, hedge_policy& policy,
                                         metrics::cluster_metrics& cm);

}  // namespace meridian::proxy
