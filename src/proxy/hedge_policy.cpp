#include "meridian/proxy/hedge_policy.hpp"

#include <algorithm>
#include <cmath>

namespace meridian::proxy {

void hedge_policy::configure(const config::hedge_config& c) {
  if (c.quantile != cfg_.quantile) cached_ = -1;
  cfg_ = c;
  budget_.configure(c.max_extra, 0);
}

void hedge_policy::observe(double seconds) {
  ring_[next_] = seconds;
  next_ = (next_ + 1) % window;
  count_ = std::min(count_ + 1, window);
  // Sorting the window for every sample would cost more than the request; every 16th is fresh
  // enough for a delay that moves with the load over seconds.
  if (++since_ >= 16) cached_ = -1;
}

double hedge_policy::delay() const {
  if (!cfg_.enabled) return -1;
  if (cfg_.quantile == 0) return std::chrono::duration<double>(cfg_.after).count();
  if (count_ < min_samples) return -1;
  if (cached_ < 0) {
    std::array<double, window> v;
    std::copy_n(ring_.begin(), count_, v.begin());
    auto at = static_cast<std::size_t>(std::ceil(cfg_.quantile * static_cast<double>(count_))) - 1;
    at = std::min(at, count_ - 1);
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(at),
                     v.begin() + static_cast<std::ptrdiff_t>(count_));
    cached_ = v[at];
    since_ = 0;
  }
  return cached_;
}

std::optional<common::time_point> hedge_policy::hedge_at(common::time_point start) {
  double d = delay();
  if (d < 0) return std::nullopt;
  return start + std::chrono::duration_cast<common::duration>(std::chrono::duration<double>(d));
}

}  // namespace meridian::proxy
