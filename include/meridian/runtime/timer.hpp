// A timer on an injectable clock (common/clock.hpp): the one way the gateway waits. On the steady
// clock it is an Asio steady_timer; on a manual clock a wait ends when the test advances the
// clock to its time, so tests of timeouts, hedges and back-offs run without sleeping. Owned and
// used by one io_context's thread (a manual clock's advance posts to it).
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <memory>

#include "meridian/common/clock.hpp"

namespace meridian::runtime {

// A timer's state, shared with the waits and wake-ups still pending when the timer goes.
struct timer_state : std::enable_shared_from_this<timer_state> {
  timer_state(boost::asio::io_context& io_, const common::clock& c)
      : io(io_), timer(io_), clock(&c) {}
  boost::asio::io_context& io;
  boost::asio::steady_timer timer;
  const common::clock* clock;
  common::time_point deadline = common::time_point::max();
  std::uint64_t subscription = 0;
  bool fired = false;  // a manual clock reached the deadline: the cancel it caused is not one
  // A wait's error as the timer's user sees it.
  boost::system::error_code settle(boost::system::error_code ec) {
    if (ec == boost::asio::error::operation_aborted && fired) ec = {};
    fired = false;
    return ec;
  }
  // A manual clock already at the deadline: the wait about to start ends at once.
  void due_now() {
    if (!clock->steady_time() && deadline != common::time_point::max() && clock->now() >= deadline)
      timer.expires_at(boost::asio::steady_timer::time_point::min());
  }
  static void on_advance(void* self);
};

class timer {
 public:
  timer(boost::asio::io_context& io, const common::clock& clock);
  ~timer();
  timer(const timer&) = delete;
  timer& operator=(const timer&) = delete;

  const common::clock& clock() const { return *s_->clock; }
  // When the next wait ends (time_point::max(): only cancel() ends it). A wait in progress keeps
  // the time it started with on the steady clock; set the time before waiting.
  void expires_at(common::time_point t);
  void expires_after(common::duration d) { expires_at(s_->clock->now() + d); }
  // Ends a wait in progress with operation_aborted.
  void cancel();

  // Completes with no error when the clock reaches the time, operation_aborted when cancelled.
  template <class Handler>
  void async_wait(Handler&& h) {
    auto s = s_;
    s->due_now();
    s->timer.async_wait([s, h = std::forward<Handler>(h)](boost::system::error_code ec) mutable {
      h(s->settle(ec));
    });
  }
  // The same, awaited.
  boost::asio::awaitable<boost::system::error_code> wait();
  // Waits `d` on the clock (cancel() ends it early).
  boost::asio::awaitable<boost::system::error_code> sleep_for(common::duration d) {
    expires_after(d);
    return wait();
  }

 private:
  std::shared_ptr<timer_state> s_;
};

}  // namespace meridian::runtime
