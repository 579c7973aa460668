// Admission of a request to its cluster (admit.cpp): the per-client cap, then a slot at once or a
// bounded wait by priority. Worker thread.
#pragma once

#include <boost/asio/awaitable.hpp>

#include <optional>

#include "proxy/admission.hpp"
#include "proxy/request.hpp"
#include "proxy/worker_context.hpp"

namespace meridian::proxy {

// Full or not, one client holds at most its cap of the cluster (limits.client_cap). True when the
// client has been answered (429).
boost::asio::awaitable<bool> refuse_over_cap(request& r);
// A slot at once, or a bounded wait by priority (x-priority, else the route's). False when the
// client has been answered or has left; else `slot` holds the slot.
boost::asio::awaitable<bool> admit(request& r, std::optional<admission_slot>& slot);

}  // namespace meridian::proxy
