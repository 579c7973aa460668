// A lazily re-armed deadline on one timer: moving a deadline later costs nothing (the timer wakes
// at the old time and sleeps again), only an earlier one touches the timer, so a connection pays
// about one timer operation per timeout period rather than per request. Owned and used by one
// worker thread; the owner may be destroyed with a wait pending.
#pragma once

#include <boost/asio/io_context.hpp>

#include <memory>

#include "meridian/common/clock.hpp"

namespace meridian::runtime {

class watchdog {
 public:
  // `on_expire(owner)` runs on the io_context's thread when the deadline passes.
  using callback = void (*)(void* owner);
  watchdog(boost::asio::io_context& io, const common::clock& clock, callback on_expire,
           void* owner);
  ~watchdog();
  watchdog(const watchdog&) = delete;
  watchdog& operator=(const watchdog&) = delete;

  void set(common::time_point deadline);
  void clear() { set(common::time_point::max()); }
  // True once the deadline passed (and on_expire ran) until reset().
  bool expired() const;
  void reset();

 private:
  struct state;
  std::shared_ptr<state> s_;
};

}  // namespace meridian::runtime
