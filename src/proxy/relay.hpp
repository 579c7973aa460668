// The response half of a proxied request: re-frames the backend's response head for the client
// and streams its body (SSE events pass through as they come), then returns the upstream
// connection to its pool when it can carry another request. Worker thread only.
#pragma once

#include <boost/asio/awaitable.hpp>

#include "meridian/common/error.hpp"
#include "meridian/http/connection.hpp"
#include "proxy/attempt.hpp"

namespace meridian::proxy {

// Sends `at`'s response to `client`; ends the attempt. The outcome is ok when the whole body
// arrived; otherwise it says who broke off (client_gone, reset or stall of the backend) and how
// many bytes the client had already received.
boost::asio::awaitable<common::outcome> relay(attempt& at, http::connection& client,
                                              std::string& head_out);

}  // namespace meridian::proxy
