#include "mock/llm_engine.hpp"

#include <vector>

namespace meridian::loadtest::llm {

asio::awaitable<void> sleep_until(steady::time_point tp) {
  asio::steady_timer t(co_await asio::this_coro::executor);
  t.expires_at(tp);
  co_await t.async_wait(use_nothrow);
}

asio::awaitable<void> wait_stall(impl_t* self) {
  auto s = self->stall_until.load(std::memory_order_relaxed);
  if (s != 0 && s > now_ns()) co_await sleep_until(steady::time_point(std::chrono::nanoseconds(s)));
}

asio::awaitable<void> engine_loop(impl_t* self) {
  std::vector<engine_event> events;
  asio::steady_timer iter(self->engine_ex());
  steady::time_point prev_end{};
  while (!self->stopping.load()) {
    auto now = steady::now();
    auto stall = steady::time_point(std::chrono::nanoseconds(self->stall_until.load()));
    if (stall > now) {
      self->wake->expires_at(stall);
      co_await self->wake->async_wait(use_nothrow);
      continue;
    }
    if (self->model.idle()) {
      self->wake->expires_after(std::chrono::seconds(1));  // bounded: re-checks stop and stall
      co_await self->wake->async_wait(use_nothrow);
      continue;
    }
    auto d = self->model.begin_iteration();
    self->publish_gauges();
    // Back-to-back iterations are scheduled from the previous end so timer slack does not
    // accumulate.
    auto start = prev_end > now - std::chrono::milliseconds(1) ? prev_end : now;
    prev_end = start + d;
    iter.expires_at(prev_end);
    co_await iter.async_wait(use_nothrow);
    events.clear();
    self->model.end_iteration(events);
    auto t = steady::now();
    for (auto& e : events) {
      auto it = self->active.find(e.id);
      if (it == self->active.end()) continue;
      auto r = it->second;
      self->c_gen_tokens.fetch_add(1, std::memory_order_relaxed);
      if (e.first) self->observe_ttft(std::chrono::duration<double>(t - r->arrived).count());
      if (e.finished) self->active.erase(it);
      asio::post(r->conn_ex, [r, fin = e.finished, cached = e.cached_tokens] {
        ++r->tokens_ready;
        r->cached_tokens = cached;
        if (fin) r->finished = true;
        r->notify.cancel();
      });
    }
    self->publish_gauges();
  }
}

void submit_to_engine(impl_t* self, std::shared_ptr<gen_request> r) {
  asio::post(self->engine_ex(), [self, r] {
    r->engine_id = self->model.submit(r->prompt_tokens, r->output_tokens, std::move(r->blocks));
    self->active.emplace(r->engine_id, r);
    self->publish_gauges();
    self->wake->cancel();
  });
}

void cancel_in_engine(impl_t* self, std::shared_ptr<gen_request> r, bool count_stop) {
  asio::post(self->engine_ex(), [self, r, count_stop] {
    self->active.erase(r->engine_id);
    if (self->model.cancel(r->engine_id) && count_stop)
      self->c_gen_stopped.fetch_add(1, std::memory_order_relaxed);
    self->publish_gauges();
  });
}

}  // namespace meridian::loadtest::llm
