// Striping (a storage cluster's `stripe:`): a GET of a whole large object is fetched as Range
// parts from several replicas at once and delivered to the client in order, as one 200 response,
// so one download can go faster than any one replica. Part 0 names the version (its ETag); every
// later part must be of that version (If-Range); a part that lags far behind the others is asked of
// a second replica and the first to finish wins; a part that fails is asked again elsewhere. At
// most max_parallel parts are in flight and at most twice that many held, each at most part_size:
// memory per download is bounded. Worker thread only.
#pragma once

#include <boost/asio/awaitable.hpp>

#include "meridian/common/error.hpp"
#include "meridian/http/connection.hpp"
#include "proxy/context.hpp"
#include "proxy/worker_context.hpp"

namespace meridian::proxy {

// Whether the request is a GET of a whole object (no Range, no precondition) on a cluster that
// stripes, and the object is known (a HEAD or GET answered earlier) to be at least the cluster's
// stripe.min_size.
bool stripes(const http::connection& c, const worker_context& w, const request_context& ctx);

// Serves the request by striping. Ok: the whole body was delivered. Otherwise, with nothing sent to
// the client (bytes_to_client 0) the caller may serve it the ordinary way; with bytes sent, the
// response has been cut short and its connection will close.
boost::asio::awaitable<common::outcome> stripe_get(http::connection& c, worker_context& w,
                                                   conn_state& st);

}  // namespace meridian::proxy
