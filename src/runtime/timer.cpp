#include "meridian/runtime/timer.hpp"

#include <boost/asio/post.hpp>

namespace meridian::runtime {

namespace asio = boost::asio;

timer::timer(asio::io_context& io, const common::clock& clock)
    : s_(std::make_shared<timer_state>(io, clock)) {
  if (!clock.steady_time()) s_->subscription = clock.subscribe(&timer_state::on_advance, s_.get());
}

timer::~timer() {
  if (s_->subscription) s_->clock->unsubscribe(s_->subscription);
  s_->timer.cancel();
}

// On the advancing thread: the check runs on the timer's own.
void timer_state::on_advance(void* self) {
  auto s = static_cast<timer_state*>(self)->shared_from_this();
  asio::post(s->io, [s] {
    if (s->deadline != common::time_point::max() && s->clock->now() >= s->deadline && !s->fired) {
      s->fired = true;
      s->timer.cancel();
    }
  });
}

void timer::expires_at(common::time_point t) {
  s_->deadline = t;
  s_->fired = false;
  if (s_->clock->steady_time()) {
    s_->timer.expires_at(t);
    return;
  }
  // A manual clock: the wait lasts until an advance reaches `t` (or ends at once if it has).
  s_->timer.expires_at(t <= s_->clock->now() ? asio::steady_timer::time_point::min()
                                             : asio::steady_timer::time_point::max());
}

void timer::cancel() {
  s_->fired = false;
  s_->timer.cancel();
}

asio::awaitable<boost::system::error_code> timer::wait() {
  auto s = s_;
  s->due_now();
  auto [ec] = co_await s->timer.async_wait(asio::as_tuple(asio::use_awaitable));
  co_return s->settle(ec);
}

}  // namespace meridian::runtime
