// Parsers for durations ("250ms"), sizes ("10MiB"), rates and sample distributions
// ("uniform:64:512").
#pragma once
#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>

namespace meridian::loadtest {

// "30s", "250ms", "100us", "1m", "1.5s"; a bare number means seconds.
std::optional<std::chrono::nanoseconds> parse_duration(std::string_view s);
// "64KiB", "10MiB", "1GiB", "100MB", "123"; bytes.
std::optional<std::uint64_t> parse_size(std::string_view s);
std::optional<double> parse_double(std::string_view s);
std::optional<std::int64_t> parse_int(std::string_view s);
std::string format_duration_ms(double ms);

// Integer-valued sample distribution for prompt lengths and max_tokens.
struct int_dist {
  enum class kind { fixed, uniform, normal, exponential };
  kind k = kind::fixed;
  double a = 0;  // fixed value / lower bound / mean
  double b = 0;  // upper bound / stddev
  std::int64_t min_value = 1;

  static std::optional<int_dist> parse(std::string_view s);
  std::int64_t sample(std::mt19937_64& rng) const;
  double mean() const;
  std::string to_string() const;
};

}  // namespace meridian::loadtest
