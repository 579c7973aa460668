// Fast non-cryptographic random source (xoshiro256**), injectable for tests. One per thread.
#pragma once

#include <cstdint>

namespace meridian::common {

class random_source {
 public:
  explicit random_source(std::uint64_t seed);
  std::uint64_t next();
  // Uniform in [0, bound) (bound > 0), without modulo bias worth caring about for balancing.
  std::uint64_t below(std::uint64_t bound) {
    return static_cast<std::uint64_t>((static_cast<unsigned __int128>(next()) * bound) >> 64);
  }
  double unit() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

 private:
  std::uint64_t s_[4];
};

// A seed from the OS for production use; tests pass fixed seeds instead.
std::uint64_t os_seed();

}  // namespace meridian::common
