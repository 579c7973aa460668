// Striping (a storage cluster's `stripe:`): a GET of a whole large object is fetched as Range
// parts from several replicas at once and delivered to the client in order, as one 200 response,
// so one download can go faster than any one replica. Part 0 names the version (its ETag); every
// later part must be of that version (If-Range); a part that lags far behind the others is asked of
// a second replica and the first to finish wins; a part that fails is asked again elsewhere. At
// most max_parallel parts are in flight and at most twice that many held, each at most part_size:
// memory per download is bounded. Worker thread only.
#pragma once

#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <utility>
#include <vector>

#include "meridian/common/error.hpp"
#include "proxy/request.hpp"
#include "proxy/worker_context.hpp"

namespace meridian::proxy {

// Whether the request is a GET of a whole object (no Range, no precondition) on a cluster that
// stripes, and the object is not known to be smaller than the cluster's stripe.min_size: known (a
// HEAD or GET answered earlier, on any worker) to be at least that, or not known at all (a cold
// object: its first part's answer tells its size).
bool stripes(request& r);

// The byte ranges [first, last] of an object of `total` bytes after its first part, which ended at
// `first_last`: parts of part_size, or the rest as one part when the object is smaller than
// min_size (a cold object found small is not striped).
std::vector<std::pair<std::uint64_t, std::uint64_t>> stripe_plan(std::uint64_t total,
                                                                 std::uint64_t first_last,
                                                                 const config::stripe_config& sc);

// How a striped GET went: served (ok: the whole body was delivered; otherwise cut short, or the
// client left); answered (nothing sent: the first part's answer is the client's to have as it is,
// e.g. a store that ignores Range answered 200 with the whole object; r.at now holds it, ready for
// the relay); or not served (nothing sent: the caller serves the request the ordinary way).
enum class stripe_result { served, answered, not_served };

struct stripe_outcome {
  stripe_result result = stripe_result::not_served;
  common::outcome outcome;
};

// Serves the request by striping. The first part is a Range request for part_size bytes; a 206
// for them with a strong ETag gives the object's size and version: the client gets a 200 of the
// whole length, and the rest of the object comes as further parts (one part, from one replica,
// when the object is smaller than min_size).
boost::asio::awaitable<stripe_outcome> stripe_get(request& r);

}  // namespace meridian::proxy
