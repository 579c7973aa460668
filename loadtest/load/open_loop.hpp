// The open-loop driver: a scheduler coroutine queues intended send times from the arrival schedule
// (late sends are measured from when they were due, so queueing shows up in latency), and each
// connection takes the next queued time when it is free. Runs on the worker's thread.
#pragma once
#include "load/worker.hpp"

namespace meridian::loadtest::runner {

asio::awaitable<void> scheduler(worker* w);
asio::awaitable<void> open_loop_conn(worker* w, connection* c);

}  // namespace meridian::loadtest::runner
