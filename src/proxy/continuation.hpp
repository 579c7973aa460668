// What happens after the relay when the backend cut a response: on a route with `resume`, an
// OpenAI stream is continued on another endpoint (the same request with the text so far), and
// an object's GET on another replica (a Range from the next byte, If-Range its ETag), inside the
// same client response, as often as the route allows; otherwise, or when that fails, the
// response is ended as broken. Worker thread only.
#pragma once

#include <boost/asio/awaitable.hpp>

#include "meridian/common/error.hpp"
#include "proxy/request.hpp"
#include "proxy/worker_context.hpp"

namespace meridian::proxy {

// Prepares a request for resume (before it is forwarded): true when its route resumes and its
// body (whole in the buffer, Content-Length) is a streamed chat or text completion.
bool prepare_resume(request& r);

// Prepares a storage GET for resume, once its response head arrived: true when its route resumes
// and the response can be continued from another replica (object_resume::begin).
bool prepare_object_resume(request& r);

// `o`: the relay's outcome. Returns the request's final one.
boost::asio::awaitable<common::outcome> after_relay(request& r, common::outcome o);

}  // namespace meridian::proxy
