// The closed-loop driver: each connection sends its next request as soon as the previous one is
// answered, until the run ends or --max-requests is reached. Runs on the worker's thread.
#pragma once
#include "load/worker.hpp"

namespace meridian::loadtest::runner {

asio::awaitable<void> closed_loop_conn(worker* w, connection* c);

}  // namespace meridian::loadtest::runner
