// The response half of a proxied request: hands the backend's response head to the client's
// exchange and streams its body as decoded payload (SSE events pass through as they come; the
// exchange frames them for its protocol), then returns the upstream connection to its pool when
// it can carry another request. Worker thread only.
#pragma once

#include <boost/asio/awaitable.hpp>

#include "meridian/common/error.hpp"
#include "meridian/http/exchange.hpp"
#include "proxy/attempt.hpp"
#include "proxy/object_resume.hpp"
#include "proxy/resume.hpp"

namespace meridian::proxy {

// Who else sees the payload as it reaches the client, besides the attempt's learning: what a
// stream has said (to resume it elsewhere) and how far an object's body got. Null: nobody.
struct payload_hooks {
  stream_resume* resume = nullptr;
  object_resume* object = nullptr;
};

// Sends `at`'s response to `client`; ends the attempt. The outcome is ok when the whole body
// arrived; otherwise it says who broke off (client_gone, reset or stall of the backend) and how
// many bytes the client had already received. A body the backend broke off is left open: the
// caller either continues it (relay_continuation) or ends it (end_broken_stream).
boost::asio::awaitable<common::outcome> relay(attempt& at, http::exchange& client,
                                              payload_hooks hooks);
// Relays the body of `at`, a continuation of a body `relay` left open, into the same response
// (its head is not sent); ends the attempt. The outcome as relay's.
boost::asio::awaitable<common::outcome> relay_continuation(attempt& at, http::exchange& client,
                                                           payload_hooks hooks);
// Whether a response `at` was relaying, cut now, can take an SSE error event: an event stream
// cut between events, in a client response that did not declare its length.
bool error_event_fits(const attempt& at, const http::exchange& client);
// Ends a response whose backend broke off (`o`, the relay's outcome; `at`, the attempt it was
// relaying): with `tell`, an SSE error event; the response is left unfinished, so no client
// takes it for a complete answer. Counted.
boost::asio::awaitable<void> end_broken_stream(attempt& at, http::exchange& client,
                                               const common::outcome& o, bool tell);

}  // namespace meridian::proxy
