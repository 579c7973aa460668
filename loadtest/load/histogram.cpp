#include "load/histogram.hpp"

#include <cmath>

namespace meridian::loadtest {

histogram::histogram() : counts_(bucket_count, 0) {}

void histogram::merge(const histogram& other) {
  if (other.total_ == 0) return;
  for (std::size_t i = 0; i < bucket_count; ++i) counts_[i] += other.counts_[i];
  total_ += other.total_;
  sum_ += other.sum_;
  if (other.min_ < min_) min_ = other.min_;
  if (other.max_ > max_) max_ = other.max_;
}

void histogram::reset() {
  std::fill(counts_.begin(), counts_.end(), 0);
  total_ = 0;
  sum_ = 0;
  min_ = UINT64_MAX;
  max_ = 0;
}

std::uint64_t histogram::lower_of(std::size_t idx) noexcept {
  if (idx < sub_count) return idx;
  const std::uint64_t rel = idx - sub_count;
  const int e = static_cast<int>(rel / half_count) + sub_bits;
  const std::uint64_t sub = half_count + rel % half_count;
  return sub << (e - (sub_bits - 1));
}

std::uint64_t histogram::width_of(std::size_t idx) noexcept {
  if (idx < sub_count) return 1;
  const int e = static_cast<int>((idx - sub_count) / half_count) + sub_bits;
  return 1ull << (e - (sub_bits - 1));
}

std::uint64_t histogram::percentile(double p) const {
  if (total_ == 0) return 0;
  if (p <= 0) return min();
  if (p >= 100) return max_;
  auto rank = static_cast<std::uint64_t>(std::ceil(p / 100.0 * static_cast<double>(total_)));
  if (rank < 1) rank = 1;
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < bucket_count; ++i) {
    seen += counts_[i];
    if (seen >= rank) {
      const std::uint64_t w = width_of(i);
      std::uint64_t v = lower_of(i) + (w > 1 ? w / 2 : 0);
      if (v < min_) v = min_;
      if (v > max_) v = max_;
      return v;
    }
  }
  return max_;
}

double histogram::cdf(std::uint64_t v) const {
  if (total_ == 0) return 0;
  const std::size_t last = index_of(v);
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i <= last; ++i) seen += counts_[i];
  return static_cast<double>(seen) / static_cast<double>(total_);
}

double histogram::stddev() const {
  if (total_ < 2) return 0;
  const double m = mean();
  double acc = 0;
  for (std::size_t i = 0; i < bucket_count; ++i) {
    if (!counts_[i]) continue;
    const double mid =
        static_cast<double>(lower_of(i)) + static_cast<double>(width_of(i) - 1) / 2.0;
    acc += static_cast<double>(counts_[i]) * (mid - m) * (mid - m);
  }
  return std::sqrt(acc / static_cast<double>(total_));
}

}  // namespace meridian::loadtest
