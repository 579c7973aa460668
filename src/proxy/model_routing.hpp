// Model-aware routing in the proxy's handler: the body's JSON "model" read for routing (and
// held to it while the body streams), /v1/models answered from discovery, unknown models
// refused, and prefix affinity's inputs. Worker thread only.
#pragma once

#include <boost/asio/awaitable.hpp>

#include "meridian/config/config.hpp"
#include "meridian/http/exchange.hpp"
#include "meridian/routing/balancer.hpp"
#include "meridian/routing/route_table.hpp"
#include "proxy/request.hpp"
#include "proxy/worker_context.hpp"

namespace meridian::proxy {

inline routing::request_view view_of(const http::exchange& ex) {
  const auto& h = ex.head();
  return {h.method, h.path, h.host, h.fields(), h.body != http::body_kind::none,
          ex.client_subject()};
}

// Answers a body the client got wrong (or too slowly); the connection closes after it.
boost::asio::awaitable<void> reply_body_error(request& r, http::body_result got);
// Reads the body's JSON "model" (as far as the peek allows) into the model guard, which holds
// the rest of the body to it. False when the client has been answered (a bad body).
boost::asio::awaitable<bool> read_model(request& r);
// Chooses the route once the body's JSON "model" is known (a route needs it). False when the
// client has been answered.
boost::asio::awaitable<bool> route_by_model(request& r, routing::match_result& m);
// Model-aware routing for clusters with discovery: answers /v1/models itself, reads the model a
// body names, and refuses one no endpoint serves. False when the client has been answered.
boost::asio::awaitable<bool> check_model(request& r);
// Prefix affinity's inputs: the prompt's blocks from the body read for routing and the session
// header's hash.
void prefix_input(request& r, const config::prefix_affinity_config& pa, routing::pick_input& in);

}  // namespace meridian::proxy
