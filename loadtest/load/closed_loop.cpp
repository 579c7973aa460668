#include "load/closed_loop.hpp"

#include "load/exchange.hpp"

namespace meridian::loadtest::runner {

asio::awaitable<void> closed_loop_conn(worker* w, connection* c) {
  while (!w->aborting && steady::now() < w->end) {
    if (w->cfg.max_requests &&
        w->shared->issued.fetch_add(1, std::memory_order_relaxed) >= w->cfg.max_requests)
      break;
    co_await do_request(w, c, steady::now());
  }
  release_connection(c);
  conn_finished(w);
}

}  // namespace meridian::loadtest::runner
