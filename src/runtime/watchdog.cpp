#include "meridian/runtime/watchdog.hpp"

#include "meridian/runtime/timer.hpp"

namespace meridian::runtime {

struct watchdog::state {
  state(boost::asio::io_context& io, const common::clock& c, callback cb, void* o)
      : timer(io, c), clock(&c), on_expire(cb), owner(o) {}
  runtime::timer timer;
  const common::clock* clock;
  callback on_expire;
  void* owner;
  common::time_point deadline = common::time_point::max();
  common::time_point armed = common::time_point::max();
  bool waiting = false;
  bool expired = false;

  static void arm(const std::shared_ptr<state>& s) {
    s->armed = s->deadline;
    if (s->armed == common::time_point::max()) return;
    s->waiting = true;
    s->timer.expires_at(s->armed);
    s->timer.async_wait([s](boost::system::error_code) {
      s->waiting = false;
      if (!s->on_expire) return;  // the owner is gone
      if (s->deadline != common::time_point::max() && s->clock->now() >= s->deadline) {
        s->deadline = common::time_point::max();
        s->expired = true;
        s->on_expire(s->owner);
        return;
      }
      arm(s);
    });
  }
};

watchdog::watchdog(boost::asio::io_context& io, const common::clock& clock, callback on_expire,
                   void* owner)
    : s_(std::make_shared<state>(io, clock, on_expire, owner)) {}

watchdog::~watchdog() {
  s_->on_expire = nullptr;
  if (s_->waiting) s_->timer.cancel();
}

void watchdog::set(common::time_point deadline) {
  s_->deadline = deadline;
  if (!s_->waiting)
    state::arm(s_);
  else if (deadline < s_->armed)
    s_->timer.cancel();  // the wake-up re-arms at the earlier time
}

bool watchdog::expired() const {
  return s_->expired;
}

void watchdog::reset() {
  s_->expired = false;
}

}  // namespace meridian::runtime
