// Admission to a cluster under overload, one instance per cluster and worker: at most
// `max_inflight` requests go upstream at once; the rest wait, by priority then in arrival
// order, at most `max_pending` of them and each at most `pending_timeout`. A full queue sheds
// its lowest priority: the newcomer if it is no higher, else the newest waiter of the lowest
// priority. Never an unbounded queue, and a shed request is answered at once. Worker thread only.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <list>
#include <string_view>

#include "meridian/config/config.hpp"
#include "meridian/http/connection.hpp"

namespace meridian::proxy {

using priority = config::request_priority;
// "critical", "standard", "sheddable" (the x-priority header, a route's priority).
std::optional<priority> parse_priority(std::string_view s);

class admission {
 public:
  enum class verdict : std::uint8_t { admitted, queue_full, timed_out, displaced, cancelled };

  // One request waiting for a slot; cancel() (the client left) ends the wait.
  class waiter final : public http::cancellable {
   public:
    waiter(boost::asio::io_context& io, priority p) : timer_(io), p_(p) {}
    ~waiter();
    void cancel() override;

   private:
    friend class admission;
    boost::asio::steady_timer timer_;
    priority p_;
    verdict v_ = verdict::timed_out;
    admission* owner_ = nullptr;  // set while queued
    std::list<waiter*>::iterator at_;
  };

  // max_inflight 0: no limit (every request is admitted at once).
  admission(std::size_t max_inflight, std::size_t max_pending,
            std::chrono::steady_clock::duration pending_timeout)
      : max_inflight_(max_inflight), max_pending_(max_pending), timeout_(pending_timeout) {}

  // A slot now, without waiting (the common case: no timer, no allocation).
  bool try_enter() {
    if (max_inflight_ != 0 && inflight_ >= max_inflight_) return false;
    ++inflight_;
    return true;
  }
  // Waits for a slot; admitted means the caller holds one and must leave().
  boost::asio::awaitable<verdict> enter(waiter& w);
  // Gives a slot back: to the first waiter of the highest priority, if any.
  void leave();
  // New limits (a config reload); a higher max_inflight admits waiters at once.
  void configure(std::size_t max_inflight, std::size_t max_pending,
                 std::chrono::steady_clock::duration pending_timeout);

  std::size_t inflight() const { return inflight_; }
  std::size_t pending() const { return pending_; }

 private:
  void unlink(waiter& w);
  waiter* lowest_newest();
  bool wake_first();  // hands a slot to the best waiter; false when none waits

  std::size_t max_inflight_, max_pending_;
  std::chrono::steady_clock::duration timeout_;
  std::size_t inflight_ = 0, pending_ = 0;
  std::array<std::list<waiter*>, 3> queues_;  // by priority
};

// Holds an admitted slot until destroyed.
class admission_slot {
 public:
  admission_slot() = default;
  explicit admission_slot(admission& a) : a_(&a) {}
  admission_slot(const admission_slot&) = delete;
  admission_slot& operator=(const admission_slot&) = delete;
  ~admission_slot() {
    if (a_) a_->leave();
  }

 private:
  admission* a_ = nullptr;
};

}  // namespace meridian::proxy
