// Admission to a cluster under overload, one instance per cluster and worker: at most
// `max_inflight` requests go upstream at once; the rest wait, by priority then in arrival
// order, at most `max_pending` of them and each at most `pending_timeout`. A full queue sheds
// its lowest priority: the newcomer if it is no higher, else the newest waiter of the lowest
// priority. Never an unbounded queue, and a shed request is answered at once. With a client
// share, a client (a key the handler derives: its address or an API key) that already holds that
// share of max_inflight is told so when the cluster is full (429), instead of queueing ahead of
// others. Whether full or not, one client never holds more than its cap (a number of slots): a
// slow or hostile client cannot take every backend connection. Worker thread only.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include "meridian/runtime/timer.hpp"

#include <array>
#include <chrono>
#include <cstdint>
#include <list>
#include <string_view>
#include <unordered_map>

#include "meridian/config/config.hpp"
#include "meridian/http/exchange.hpp"

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
    waiter(boost::asio::io_context& io, const common::clock& clock, priority p,
           std::uint64_t client = 0)
        : timer_(io, clock), p_(p), client_(client) {}
    ~waiter();
    void cancel() override;

   private:
    friend class admission;
    runtime::timer timer_;
    priority p_;
    std::uint64_t client_;
    verdict v_ = verdict::timed_out;
    admission* owner_ = nullptr;  // set while queued
    std::list<waiter*>::iterator at_;
  };

  // max_inflight 0: no limit (every request is admitted at once); share and cap as in
  // configure().
  admission(std::size_t max_inflight, std::size_t max_pending, common::duration pending_timeout,
            double share = 0, std::size_t cap = 0)
      : max_inflight_(max_inflight),
        max_pending_(max_pending),
        share_(share),
        cap_(cap),
        timeout_(pending_timeout) {}

  // A slot now, without waiting (the common case: no timer, no allocation). `client`: the
  // requester's key, 0 for none.
  bool try_enter(std::uint64_t client = 0) {
    if (max_inflight_ != 0 && inflight_ >= max_inflight_) return false;
    ++inflight_;
    hold(client);
    return true;
  }
  // Whether `client` already holds its share of the slots (never without a share or a key).
  bool over_share(std::uint64_t client) const;
  // Whether `client` holds its cap of slots, full or not (never without a key or a cap).
  bool at_cap(std::uint64_t client) const;
  std::size_t cap() const { return cap_; }
  // Waits for a slot; admitted means the caller holds one and must leave().
  boost::asio::awaitable<verdict> enter(waiter& w);
  // Gives `client`'s slot back: to the first waiter of the highest priority, if any.
  void leave(std::uint64_t client = 0);
  // New limits (a config reload); a higher max_inflight admits waiters at once. share: the
  // part of max_inflight one client may hold when the cluster is full (0: no share); cap: the
  // slots it may hold at any time (0: no cap).
  void configure(std::size_t max_inflight, std::size_t max_pending,
                 common::duration pending_timeout, double share = 0, std::size_t cap = 0);

  std::size_t inflight() const { return inflight_; }
  std::size_t pending() const { return pending_; }

 private:
  void unlink(waiter& w);
  waiter* lowest_newest();
  bool wake_first();  // hands a slot to the best waiter; false when none waits
  bool counts_clients() const { return share_ > 0 || cap_ > 0; }
  void hold(std::uint64_t client) {
    if (client != 0 && counts_clients()) ++held_[client];
  }
  void release(std::uint64_t client);

  std::size_t max_inflight_, max_pending_;
  double share_ = 0;
  std::size_t cap_ = 0;
  // Slots per client, with a share or cap; entries at zero are kept up to kept_clients.
  static constexpr std::size_t kept_clients = 1024;
  std::unordered_map<std::uint64_t, std::uint32_t> held_;
  common::duration timeout_;
  std::size_t inflight_ = 0, pending_ = 0;
  std::array<std::list<waiter*>, 3> queues_;  // by priority
};

// Holds an admitted slot until destroyed.
class admission_slot {
 public:
  admission_slot() = default;
  explicit admission_slot(admission& a, std::uint64_t client = 0) : a_(&a), client_(client) {}
  admission_slot(const admission_slot&) = delete;
  admission_slot& operator=(const admission_slot&) = delete;
  ~admission_slot() {
    if (a_) a_->leave(client_);
  }

 private:
  admission* a_ = nullptr;
  std::uint64_t client_ = 0;
};

}  // namespace meridian::proxy
