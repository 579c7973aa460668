// Tenants in the proxy's handler: who sent the request (its API key), whether the tenant may use
// the model, its place under the tenant's limits with OpenAI's rate-limit headers on the answer,
// and the settlement of tokens when the request ends. Worker thread only; the tenants' state is
// shared by the workers through atomics (tenants/tenants.hpp).
#pragma once

#include <boost/asio/awaitable.hpp>

#include "proxy/request.hpp"

namespace meridian::proxy {

// Reads the request's key (the tenants header, "Bearer <key>" for authorization, or x-api-key)
// and names its tenant; without a key, a verified client certificate's subject may name it. False
// when the client has been answered: 401 invalid_api_key (a key missing where one is required,
// or unknown). True at once where tenants are off.
boost::asio::awaitable<bool> identify_tenant(request& r);
// Before the request goes upstream: its model (a gRPC call's first message's; else the JSON
// body's, read now if the tenant is held to some models and nothing read it yet), 403 (or 404
// where models are hidden) for one the tenant may not use, else the tenant's place and its
// estimate charged (body bytes / 4 for the prompt, max_tokens or the default for the
// completion), or 429 with Retry-After. The rate-limit headers go on whatever answers it.
// False when the client has been answered.
boost::asio::awaitable<bool> admit_tenant(request& r, bool grpc);
// The request ended with `status`: its place given back, its tokens settled against what it used
// (usage or the stream's count; the estimate when the backend said nothing; none when no backend
// answered) and counted.
void settle_tenant(request_context& ctx, int status, common::time_point now);

}  // namespace meridian::proxy
