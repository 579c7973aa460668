#include "proxy/hedge.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <array>
#include <optional>

namespace meridian::proxy {

namespace asio = boost::asio;
using common::outcome;
using metrics::hedge_event;

namespace {
// An answer that settles the race: a response on its way to the client.
bool decisive(const outcome& o) {
  return o.ok() && o.status < 500;
}

// The client leaving cancels both tries.
struct both final : http::cancellable {
  std::array<attempt*, 2> tries{};
  void cancel() override {
    for (auto* a : tries) a->cancel();
  }
};
}  // namespace

asio::awaitable<race_result> race(http::connection& c, worker_context& w, conn_state& st,
                                  const start_try& start, std::size_t k, bool has_next,
                                  common::time_point hedge_at, hedge_policy& policy,
                                  metrics::cluster_metrics& cm) {
  if (!st.spare) st.spare = std::make_unique<attempt>(w);
  both watch;
  watch.tries = {st.at.get(), st.spare.get()};
  struct lane {
    std::optional<outcome> result;
    bool running = false;
  };
  std::array<lane, 2> lanes;
  std::array<int, 2> ended{};  // lanes in the order they ended
  int n_ended = 0;
  asio::steady_timer wake(w.io);
  auto ex = co_await asio::this_coro::executor;
  // Each try runs as its own coroutine; this one waits on `wake`, which an ending try cancels.
  // It returns only once both have ended: they refer to its frame.
  auto launch = [&](int i, std::size_t cand) {
    auto& at = *watch.tries[i];
    auto ep = start(at, cand, i == 1);
    lanes[i].running = true;
    asio::co_spawn(ex, at.run(std::move(ep), true, c, st.head_out, nullptr),
                   [&, i](std::exception_ptr e, outcome o) {
                     if (e) o.kind = common::outcome_kind::reset_before_response;
                     lanes[i].result = std::move(o);
                     lanes[i].running = false;
                     ended[n_ended++] = i;
                     wake.cancel();
                   });
  };
  // Until `t` (max(): until a try ends).
  auto sleep_until = [&](common::time_point t) -> asio::awaitable<void> {
    auto now = w.clock->now();
    if (t == common::time_point::max())
      wake.expires_at(asio::steady_timer::time_point::max());
    else
      wake.expires_after(t > now ? t - now : common::duration::zero());
    co_await wake.async_wait(asio::as_tuple(asio::use_awaitable));
  };
  c.watch_client(&watch);
  launch(0, k);
  bool hedge_due = has_next;  // a hedge may still be sent
  int handled = 0;
  race_result r;
  r.last = k;
  while (true) {
    int winner = -1;
    for (; handled < n_ended && winner < 0; ++handled) {
      int i = ended[handled];
      // An answer wins; a failure or a 5xx while the other try runs gives way to it.
      if (decisive(*lanes[i].result) || !lanes[1 - i].running)
        winner = i;
      else if (lanes[i].result->ok())
        watch.tries[i]->finish(false);
    }
    if (winner >= 0) {
      int other = 1 - winner;
      if (lanes[other].running) {
        watch.tries[other]->abandon();
        cm.hedges[static_cast<int>(hedge_event::cancelled)].inc();
        while (lanes[other].running) co_await sleep_until(common::time_point::max());
      }
      if (lanes[other].result && lanes[other].result->ok()) watch.tries[other]->finish(false);
      if (winner == 1) {
        std::swap(st.at, st.spare);
        if (decisive(*lanes[1].result)) {
          cm.hedges[static_cast<int>(hedge_event::won)].inc();
          r.hedge_won = true;
        }
      }
      r.outcome = std::move(*lanes[winner].result);
      break;
    }
    auto now = w.clock->now();
    if (hedge_due && now >= hedge_at) {
      hedge_due = false;
      if (c.client_gone()) {
        // the watch is cancelling the try
      } else if (!policy.try_spend(now)) {
        cm.hedge_budget_exhausted.inc();
      } else {
        cm.hedges[static_cast<int>(hedge_event::sent)].inc();
        launch(1, k + 1);
        r.last = k + 1;
      }
    }
    co_await sleep_until(hedge_due ? hedge_at : common::time_point::max());
  }
  c.watch_client(st.at.get());
  co_return r;
}

}  // namespace meridian::proxy
