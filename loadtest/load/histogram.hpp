// Log-linear latency histogram (HdrHistogram layout, <0.4% error at bucket midpoints); owned by one
// thread.
#pragma once
#include <cstdint>
#include <vector>

namespace meridian::loadtest {

class histogram {
 public:
  // 2^sub_bits values per power of two: [0,256) is exact, above it 128 linear buckets per octave.
  static constexpr int sub_bits = 8;
  static constexpr std::uint64_t sub_count = 1ull << sub_bits;
  static constexpr std::uint64_t half_count = sub_count / 2;
  static constexpr std::size_t bucket_count = sub_count + (64 - sub_bits) * half_count;

  histogram();

  void record(std::uint64_t value, std::uint64_t count = 1) noexcept {
    counts_[index_of(value)] += count;
    total_ += count;
    sum_ += static_cast<double>(value) * static_cast<double>(count);
    if (value < min_) min_ = value;
    if (value > max_) max_ = value;
  }
  void merge(const histogram& other);
  void reset();

  std::uint64_t count() const noexcept { return total_; }
  std::uint64_t min() const noexcept { return total_ ? min_ : 0; }
  std::uint64_t max() const noexcept { return max_; }
  double mean() const noexcept { return total_ ? sum_ / static_cast<double>(total_) : 0.0; }
  double stddev() const;
  // Nearest-rank percentile, p in [0,100]; reported as the bucket midpoint clamped to [min,max].
  std::uint64_t percentile(double p) const;
  // Fraction of recorded values <= v (for CDF plots).
  double cdf(std::uint64_t v) const;

  static std::size_t index_of(std::uint64_t v) noexcept {
    if (v < sub_count) return static_cast<std::size_t>(v);
    const int e = 63 - __builtin_clzll(v);  // >= sub_bits
    const int shift = e - (sub_bits - 1);
    const std::uint64_t sub = v >> shift;  // in [half_count, sub_count)
    return static_cast<std::size_t>(
        sub_count + static_cast<std::uint64_t>(e - sub_bits) * half_count + (sub - half_count));
  }
  static std::uint64_t lower_of(std::size_t idx) noexcept;
  static std::uint64_t width_of(std::size_t idx) noexcept;

 private:
  std::vector<std::uint64_t> counts_;
  std::uint64_t total_ = 0;
  double sum_ = 0;
  std::uint64_t min_ = UINT64_MAX;
  std::uint64_t max_ = 0;
};

}  // namespace meridian::loadtest
