// Sending a request to one of its candidates: the decision counted, the balancer told, and the
// try's value made. Used by the handler's forward loop and by a hedge race alike. Worker thread.
#pragma once

#include "meridian/routing/balancer.hpp"
#include "proxy/request.hpp"

namespace meridian::proxy {

// A try of `r` on candidate `i` of `picks` (chosen from `in`): counts why it was picked (`hedge`,
// a retry when i > 0, else the balancer's reason) and the try itself, tells the balancer, makes
// it the request's last endpoint, and returns its spec (endpoint, head, deadlines, route
// metrics, prefix credit, transfer size). The caller adds the body tap and pool reuse.
try_spec dispatch(request& r, const routing::candidates& picks, const routing::pick_input& in,
                  std::size_t i, bool hedge);

}  // namespace meridian::proxy
