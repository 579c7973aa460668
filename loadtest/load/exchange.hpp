// One request on one keep-alive client connection: connect when needed, write the request, read and
// decode the response (plain, chunked, SSE), and account for it. Runs on the worker's thread.
#pragma once
#include "load/worker.hpp"

namespace meridian::loadtest::runner {

// Closes the connection's socket (if any) and marks it for a fresh connect.
void drop_connection(connection* c);
asio::awaitable<bool> ensure_connected(worker* w, connection* c);
// Sends one request due at `intended` (retried once on a fresh connection when a reused one turns
// out closed) and records its outcome.
asio::awaitable<void> do_request(worker* w, connection* c, steady::time_point intended);

}  // namespace meridian::loadtest::runner
