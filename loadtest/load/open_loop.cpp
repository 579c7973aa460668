#include "load/open_loop.hpp"

#include <vector>

#include "load/exchange.hpp"
#include "load/results.hpp"

namespace meridian::loadtest::runner {

asio::awaitable<void> scheduler(worker* w) {
  asio::steady_timer t(w->ctx);
  while (!w->aborting) {
    auto next = w->schedule.next();
    if (!next) break;
    if (w->cfg.max_requests &&
        w->shared->issued.fetch_add(1, std::memory_order_relaxed) >= w->cfg.max_requests)
      break;
    auto tp = w->start + std::chrono::nanoseconds(static_cast<std::int64_t>(*next * 1e9));
    if (tp > steady::now() + std::chrono::microseconds(20)) {
      t.expires_at(tp);
      co_await t.async_wait(use_nothrow);
    }
    if (!w->pending.push(tp)) {
      outcome o;
      o.error = error_kind::unsent;
      o.done = steady::now();
      ++w->unsent;
      record(w, nullptr, tp, o.done, o, 0);
      continue;
    }
    w->wake_one();
  }
  w->schedule_done = true;
  w->wake_all();
}

asio::awaitable<void> open_loop_conn(worker* w, connection* c) {
  while (!w->aborting) {
    if (w->pending.empty()) {
      if (w->schedule_done) break;
      c->idle = true;
      w->idle.push_back(c);
      c->wake.expires_at(w->hard_end);
      co_await c->wake.async_wait(use_nothrow);
      if (c->idle) {  // timed out rather than handed work
        c->idle = false;
        std::erase(w->idle, c);
      }
      continue;
    }
    auto intended = w->pending.pop();
    co_await do_request(w, c, intended);
  }
  release_connection(c);
  conn_finished(w);
}

}  // namespace meridian::loadtest::runner
