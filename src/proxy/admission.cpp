#include "proxy/admission.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>

namespace meridian::proxy {

namespace asio = boost::asio;

std::optional<priority> parse_priority(std::string_view s) {
  if (s == "critical") return priority::critical;
  if (s == "standard") return priority::standard;
  if (s == "sheddable") return priority::sheddable;
  return std::nullopt;
}

admission::waiter::~waiter() {
  if (owner_) owner_->unlink(*this);
}

void admission::waiter::cancel() {
  if (!owner_) return;
  v_ = verdict::cancelled;
  owner_->unlink(*this);
  timer_.cancel();
}

void admission::unlink(waiter& w) {
  queues_[static_cast<int>(w.p_)].erase(w.at_);
  w.owner_ = nullptr;
  --pending_;
}

admission::waiter* admission::lowest_newest() {
  for (auto& q : queues_)
    if (!q.empty()) return q.back();
  return nullptr;
}

bool admission::over_share(std::uint64_t client) const {
  if (client == 0 || share_ <= 0 || max_inflight_ == 0) return false;
  auto it = held_.find(client);
  auto cap = std::max<double>(1, share_ * static_cast<double>(max_inflight_));
  return it != held_.end() && it->second >= cap;
}

bool admission::at_cap(std::uint64_t client) const {
  if (client == 0 || cap_ == 0) return false;
  auto it = held_.find(client);
  return it != held_.end() && it->second >= cap_;
}

void admission::release(std::uint64_t client) {
  if (client == 0) return;
  auto it = held_.find(client);
  if (it == held_.end() || --it->second != 0) return;
  // A client's entry stays while the table is small: one that sends request after request would
  // otherwise cost a node allocation and free per request (every request counts, with the cap).
  if (held_.size() > kept_clients) held_.erase(it);
}

asio::awaitable<admission::verdict> admission::enter(waiter& w) {
  if (try_enter(w.client_)) co_return verdict::admitted;
  if (pending_ >= max_pending_) {
    // Full: the lowest priority goes, the newest of it first (it has waited least).
    waiter* victim = lowest_newest();
    if (victim == nullptr || victim->p_ >= w.p_) co_return verdict::queue_full;
    victim->v_ = verdict::displaced;
    unlink(*victim);
    victim->timer_.cancel();
  }
  auto& q = queues_[static_cast<int>(w.p_)];
  w.at_ = q.insert(q.end(), &w);
  w.owner_ = this;
  w.v_ = verdict::timed_out;
  ++pending_;
  w.timer_.expires_after(timeout_);
  co_await w.timer_.wait();
  // Whoever ended the wait set the verdict (admitted, displaced, cancelled); an expiry leaves
  // timed_out and the waiter still queued.
  if (w.owner_) unlink(w);
  co_return w.v_;
}

bool admission::wake_first() {
  for (auto it = queues_.rbegin(); it != queues_.rend(); ++it) {
    if (it->empty()) continue;
    waiter* next = it->front();
    next->v_ = verdict::admitted;
    hold(next->client_);
    unlink(*next);
    next->timer_.cancel();
    return true;
  }
  return false;
}

void admission::leave(std::uint64_t client) {
  release(client);
  if (!wake_first()) --inflight_;  // else the slot passed on: in flight stays the same
}

void admission::configure(std::size_t max_inflight, std::size_t max_pending,
                          common::duration pending_timeout, double share, std::size_t cap) {
  share_ = share;
  cap_ = cap;
  max_inflight_ = max_inflight;
  if (!counts_clients()) held_.clear();
  max_pending_ = max_pending;
  timeout_ = pending_timeout;
  while ((max_inflight_ == 0 || inflight_ < max_inflight_) && wake_first()) ++inflight_;
}

}  // namespace meridian::proxy
