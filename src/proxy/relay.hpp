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
// many bytes the client had already received. A body the backend broke off is left open: the
// caller either continues it (relay_continuation) or ends it (end_broken_stream).
boost::asio::awaitable<common::outcome> relay(attempt& at, http::connection& client,
                                              std::string& head_out);
// Relays the body of `at`, a continuation of a body `relay` left open, into the same response
// (its head is not sent); ends the attempt. `client_chunked`: the client's response is chunked
// (its bytes go out as chunks, and a terminating chunk when done), else they go out as they are
// (a Content-Length or close-delimited response). The outcome as relay's.
boost::asio::awaitable<common::outcome> relay_continuation(attempt& at, http::connection& client,
                                                           bool client_chunked);
// Whether a response `at` was relaying, cut now, can take an SSE error event: an event stream
// cut between events, framed so that more bytes fit (chunked, or close-delimited).
bool error_event_fits(const attempt& at);
// Ends a response whose backend broke off (`o`, the relay's outcome; `at`, the attempt it was
// relaying): with `tell`, an SSE error event; then the response ends without its terminating
// chunk, so no client takes it for a complete answer. Counted.
boost::asio::awaitable<void> end_broken_stream(attempt& at, http::connection& client,
                                               const common::outcome& o, bool tell);

}  // namespace meridian::proxy
