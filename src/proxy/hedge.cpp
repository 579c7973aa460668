#include "proxy/hedge.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <array>
#include <optional>

#include "meridian/runtime/timer.hpp"
#include "proxy/dispatch.hpp"

namespace meridian::proxy {

namespace asio = boost::asio;
using common::outcome;
using metrics::hedge_event;

namespace {
// An answer that settles the race: a response on its way to the client.
bool decisive(const outcome& o) {
  return o.ok() && o.status < 500;
}

// The two tries of one race and how they ended. Each try runs as its own coroutine and, when it
// ends, records its outcome and cancels `wake`, on which race() waits; race() returns only once
// both have ended, since they refer to this object in its frame. The client leaving cancels both.
struct race_state final : http::cancellable {
  race_state(worker_context& w, std::array<attempt*, 2> t) : tries(t), wake(w.io, *w.clock) {}

  std::array<attempt*, 2> tries;
  std::array<std::optional<outcome>, 2> result;
  std::array<bool, 2> running{};
  std::array<int, 2> ended{};  // tries in the order they ended
  int n_ended = 0;
  runtime::timer wake;

  void cancel() override {
    for (auto* a : tries) a->cancel();
  }
  void launch(const asio::any_io_executor& ex, int i, try_spec t, http::exchange& client) {
    running[i] = true;
    asio::co_spawn(ex, tries[i]->run(std::move(t), client),
                   [this, i](std::exception_ptr e, outcome o) {
                     if (e) o.kind = common::outcome_kind::reset_before_response;
                     result[i] = std::move(o);
                     running[i] = false;
                     ended[n_ended++] = i;
                     wake.cancel();
                   });
  }
  // Until `t` (max(): until a try ends).
  asio::awaitable<void> sleep_until(common::time_point t) {
    wake.expires_at(t);
    co_await wake.wait();
  }
  // The next try to end that settles the race, or -1: an answer wins, and so does the last
  // try left; a failure or a 5xx while the other still runs gives way to it.
  int settled(int& handled) {
    for (; handled < n_ended; ++handled) {
      int i = ended[handled];
      if (decisive(*result[i]) || !running[1 - i]) return ended[handled++];
      if (result[i]->ok()) tries[i]->finish(false);
    }
    return -1;
  }
};

// What the race says of its tries' endpoints (outlier ejection for slowness): the first try
// answered before the hedge deadline (`deadline_ahead`: not yet reached, else min()), or it was
// still waiting when the hedge answered first; a winning hedge was in time.
void record_race(worker_context& w, const race_state& rs, int winner,
                 common::time_point deadline_ahead) {
  using upstream::worker_upstreams;
  if (!decisive(*rs.result[winner])) return;
  auto now = w.clock->now();
  if (winner == 0) {
    if (now < deadline_ahead)
      w.ups.record_race(*rs.tries[0]->endpoint(), worker_upstreams::race::on_time, now);
    return;
  }
  w.ups.record_race(*rs.tries[1]->endpoint(), worker_upstreams::race::on_time, now);
  if (rs.running[0]) w.ups.record_race(*rs.tries[0]->endpoint(), worker_upstreams::race::lost, now);
}
}  // namespace

asio::awaitable<race_result> race(request& r, const routing::candidates& picks,
                                  const routing::pick_input& in, std::size_t k,
                                  common::time_point hedge_at, hedge_policy& policy) {
  auto& cm = r.w.metrics.cluster(r.ctx.cluster);
  if (!r.spare) r.spare = std::make_unique<attempt>(r.w);
  race_state rs(r.w, {r.at.get(), r.spare.get()});
  auto ex = co_await asio::this_coro::executor;
  r.ex.watch_client(&rs);
  rs.launch(ex, 0, dispatch(r, picks, in, k, false), r.ex);
  bool hedge_due = k + 1 < picks.size();  // a hedge may still be sent
  int handled = 0, winner = -1;
  race_result out;
  out.last = k;
  while ((winner = rs.settled(handled)) < 0) {
    auto now = r.w.clock->now();
    if (hedge_due && now >= hedge_at) {
      hedge_due = false;
      if (r.ex.client_gone()) {
        // the watch is cancelling the try
      } else if (!policy.try_spend(now)) {
        cm.hedge_budget_exhausted.inc();
      } else {
        cm.hedges[static_cast<int>(hedge_event::sent)].inc();
        rs.launch(ex, 1, dispatch(r, picks, in, k + 1, true), r.ex);
        out.last = k + 1;
      }
    }
    co_await rs.sleep_until(hedge_due ? hedge_at : common::time_point::max());
  }
  int other = 1 - winner;
  record_race(r.w, rs, winner, hedge_due ? hedge_at : common::time_point::min());
  if (rs.running[other]) {
    rs.tries[other]->abandon();
    cm.hedges[static_cast<int>(hedge_event::cancelled)].inc();
    while (rs.running[other]) co_await rs.sleep_until(common::time_point::max());
  }
  if (rs.result[other] && rs.result[other]->ok()) rs.tries[other]->finish(false);
  if (winner == 1) {
    std::swap(r.at, r.spare);
    if (decisive(*rs.result[1])) {
      cm.hedges[static_cast<int>(hedge_event::won)].inc();
      out.hedge_won = true;
    }
  }
  out.outcome = std::move(*rs.result[winner]);
  r.ex.watch_client(r.at.get());
  co_return out;
}

}  // namespace meridian::proxy
