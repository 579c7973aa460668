// gRPC calls to KServe v2 / Triton backends (clusters of kind grpc_inference): the model read
// from the first request message, grpc-timeout as the deadline, the call made on the worker's
// multiplexed HTTP/2 channel to the endpoint the balancer picks, and the response head, messages
// and trailers relayed as they come. Gateway errors reach the client as gRPC statuses (the
// exchange shapes them for a gRPC request). Worker thread.
#pragma once

#include <boost/asio/awaitable.hpp>

#include "meridian/http/exchange.hpp"
#include "meridian/routing/route_table.hpp"
#include "proxy/request.hpp"

namespace meridian::proxy {

// A gRPC request: content-type application/grpc (or application/grpc+proto, ...).
bool is_grpc(const http::exchange& ex);

// Chooses the route once the first message's model_name is known (a route needs it). False
// when the client has been answered (a message that is not protobuf, compressed, too large).
boost::asio::awaitable<bool> route_by_grpc_model(request& r, routing::match_result& m);

// Serves a request routed to a grpc_inference cluster, start to end.
boost::asio::awaitable<void> serve_grpc(request& r);

}  // namespace meridian::proxy
