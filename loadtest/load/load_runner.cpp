// The load generator's run driver: per-thread workers, each with its own io_context, arrival
// schedule, keep-alive connections and statistics, started together and merged on the calling
// thread after all of them join.
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "load/closed_loop.hpp"
#include "load/exchange.hpp"
#include "load/load.hpp"
#include "load/open_loop.hpp"
#include "load/results.hpp"
#include "load/storage_setup.hpp"
#include "load/worker.hpp"

namespace meridian::loadtest {

namespace {

using runner::worker;
using workers = std::vector<std::unique_ptr<worker>>;

// Ends the run at hard_end: requests still queued are reported unsent, open sockets are closed.
asio::awaitable<void> stop_at_hard_end(worker* w) {
  w->stopper.expires_at(w->hard_end);
  auto [ec] = co_await w->stopper.async_wait(use_nothrow);
  if (ec) co_return;  // every connection finished first
  w->aborting = true;
  while (!w->pending.empty()) {
    auto tp = w->pending.pop();
    runner::outcome o;
    o.error = error_kind::unsent;
    o.done = steady::now();
    ++w->unsent;
    runner::record(w, nullptr, tp, o.done, o, 0);
  }
  for (auto& c : w->conns) runner::drop_connection(c.get());
  w->wake_all();
}

asio::awaitable<void> progress_tick(worker* w) {
  asio::steady_timer t(w->ctx);
  while (!w->aborting && w->live_conns > 0) {
    t.expires_after(std::chrono::seconds(1));
    co_await t.async_wait(use_nothrow);
    w->a_p50.store(w->progress_hist.percentile(50), std::memory_order_relaxed);
    w->a_p99.store(w->progress_hist.percentile(99), std::memory_order_relaxed);
    w->progress_hist.reset();
  }
}

void spawn_workload(const load_config& cfg, worker* w) {
  w->target = tcp::endpoint(asio::ip::make_address(cfg.host), cfg.port);
  w->live_conns = static_cast<int>(w->conns.size());
  for (auto& c : w->conns)
    asio::co_spawn(
        w->ctx,
        cfg.closed ? runner::closed_loop_conn(w, c.get()) : runner::open_loop_conn(w, c.get()),
        asio::detached);
  if (!cfg.closed) asio::co_spawn(w->ctx, runner::scheduler(w), asio::detached);
  asio::co_spawn(w->ctx, stop_at_hard_end(w), asio::detached);
}

void print_progress(const workers& ws, steady::time_point start) {
  std::uint64_t done = 0, fail = 0, infl = 0, p50 = 0, p99 = 0;
  for (auto& w : ws) {
    done += w->a_completed.load();
    fail += w->a_failed.load();
    infl += w->a_inflight.load();
    p50 = std::max(p50, w->a_p50.load());
    p99 = std::max(p99, w->a_p99.load());
  }
  const double el = std::chrono::duration<double>(steady::now() - start).count();
  std::printf("\r[%6.1fs] done %llu (%.0f/s)  in-flight %llu  p50 %s  p99 %s  errors %llu   ", el,
              static_cast<unsigned long long>(done), el > 0 ? static_cast<double>(done) / el : 0.0,
              static_cast<unsigned long long>(infl),
              format_duration_ms(static_cast<double>(p50) / 1e6).c_str(),
              format_duration_ms(static_cast<double>(p99) / 1e6).c_str(),
              static_cast<unsigned long long>(fail));
  std::fflush(stdout);
}

// Runs every worker on its own thread from the common start and waits for all of them, printing
// the progress line once a second when asked to.
void run_threads(const workers& ws, steady::time_point start, bool progress) {
  std::mutex mu;
  std::condition_variable cv;
  int running = static_cast<int>(ws.size());
  std::vector<std::thread> threads;
  for (auto& w : ws)
    threads.emplace_back([&, wp = w.get()] {
      // All threads begin together at the common start.
      std::this_thread::sleep_until(start);
      wp->ctx.run();
      std::lock_guard lk(mu);
      --running;
      cv.notify_all();
    });
  {
    std::unique_lock lk(mu);
    while (running > 0) {
      cv.wait_for(lk, std::chrono::seconds(1));
      if (!progress || running == 0) continue;
      print_progress(ws, start);
    }
  }
  for (auto& t : threads) t.join();
}

}  // namespace

run_summary run_load(const load_config& cfg) {
  if (cfg.storage && cfg.storage_setup && cfg.put_ratio < 1.0) runner::storage_setup(cfg);
  runner::shared_state sh;
  const int n = cfg.threads;
  const auto start = steady::now() + std::chrono::milliseconds(20);
  workers ws;
  for (int i = 0; i < n; ++i) ws.push_back(std::make_unique<worker>(cfg, i, n, &sh, start));
  for (auto& w : ws) spawn_workload(cfg, w.get());
  const bool progress =
      cfg.progress == 1 || (cfg.progress == -1 && ::isatty(STDOUT_FILENO) && !cfg.quiet);
  if (progress)
    for (auto& w : ws) asio::co_spawn(w->ctx, progress_tick(w.get()), asio::detached);
  run_threads(ws, start, progress);
  if (progress) std::printf("\n");
  return runner::summarize(cfg, ws, start);
}

}  // namespace meridian::loadtest
