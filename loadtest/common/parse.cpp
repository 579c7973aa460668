#include "common/parse.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <string>

namespace meridian::loadtest {

namespace {
std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}
// Splits "12.5ms" into 12.5 and "ms".
bool split_number(std::string_view s, double& num, std::string_view& unit) {
  s = trim(s);
  std::size_t i = 0;
  while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.' ||
                          s[i] == '-' || s[i] == '+' || s[i] == 'e' || s[i] == 'E')) {
    // 'e' only counts as exponent when followed by a digit or sign
    if ((s[i] == 'e' || s[i] == 'E') &&
        !(i + 1 < s.size() &&
          (std::isdigit(static_cast<unsigned char>(s[i + 1])) || s[i + 1] == '-')))
      break;
    ++i;
  }
  if (i == 0) return false;
  auto d = parse_double(s.substr(0, i));
  if (!d) return false;
  num = *d;
  unit = trim(s.substr(i));
  return true;
}
}  // namespace

std::optional<double> parse_double(std::string_view s) {
  s = trim(s);
  if (s.empty()) return std::nullopt;
  double v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

std::optional<std::int64_t> parse_int(std::string_view s) {
  s = trim(s);
  std::int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc{} || p != s.data() + s.size()) return std::nullopt;
  return v;
}

std::optional<std::chrono::nanoseconds> parse_duration(std::string_view s) {
  double n = 0;
  std::string_view unit;
  if (!split_number(s, n, unit) || n < 0) return std::nullopt;
  double mult = 0;
  if (unit.empty() || unit == "s")
    mult = 1e9;
  else if (unit == "ms")
    mult = 1e6;
  else if (unit == "us")
    mult = 1e3;
  else if (unit == "ns")
    mult = 1;
  else if (unit == "m" || unit == "min")
    mult = 60e9;
  else if (unit == "h")
    mult = 3600e9;
  else
    return std::nullopt;
  return std::chrono::nanoseconds(static_cast<std::int64_t>(std::llround(n * mult)));
}

std::optional<std::uint64_t> parse_size(std::string_view s) {
  double n = 0;
  std::string_view unit;
  if (!split_number(s, n, unit) || n < 0) return std::nullopt;
  double mult = 0;
  if (unit.empty() || unit == "B")
    mult = 1;
  else if (unit == "KiB")
    mult = 1024.0;
  else if (unit == "MiB")
    mult = 1024.0 * 1024;
  else if (unit == "GiB")
    mult = 1024.0 * 1024 * 1024;
  else if (unit == "KB" || unit == "kB")
    mult = 1e3;
  else if (unit == "MB")
    mult = 1e6;
  else if (unit == "GB")
    mult = 1e9;
  else
    return std::nullopt;
  return static_cast<std::uint64_t>(std::llround(n * mult));
}

std::string format_duration_ms(double ms) {
  char buf[64];
  if (ms < 1)
    std::snprintf(buf, sizeof buf, "%.0fus", ms * 1000);
  else if (ms < 1000)
    std::snprintf(buf, sizeof buf, "%.3gms", ms);
  else
    std::snprintf(buf, sizeof buf, "%.3gs", ms / 1000);
  return buf;
}

std::optional<int_dist> int_dist::parse(std::string_view s) {
  s = trim(s);
  std::string_view parts[4];
  int n = 0;
  while (n < 4) {
    auto c = s.find(':');
    parts[n++] = s.substr(0, c);
    if (c == std::string_view::npos) break;
    s.remove_prefix(c + 1);
    if (n == 4) return std::nullopt;
  }
  int_dist d;
  if (n == 1) {  // bare number = fixed
    auto v = parse_double(parts[0]);
    if (!v || *v < 0) return std::nullopt;
    d.a = *v;
    d.min_value = 0;
    return d;
  }
  auto a = parse_double(parts[1]);
  if (!a || *a < 0) return std::nullopt;
  d.a = *a;
  if (parts[0] == "fixed" && n == 2) {
    d.k = kind::fixed;
    d.min_value = 0;
  } else if (parts[0] == "exponential" && n == 2) {
    d.k = kind::exponential;
  } else if ((parts[0] == "uniform" || parts[0] == "normal") && n == 3) {
    auto b = parse_double(parts[2]);
    if (!b || *b < 0) return std::nullopt;
    d.b = *b;
    d.k = parts[0] == "uniform" ? kind::uniform : kind::normal;
    if (d.k == kind::uniform && d.b < d.a) return std::nullopt;
  } else {
    return std::nullopt;
  }
  return d;
}

std::int64_t int_dist::sample(std::mt19937_64& rng) const {
  double v = a;
  switch (k) {
    case kind::fixed:
      break;
    case kind::uniform:
      v = static_cast<double>(
          std::uniform_int_distribution<std::int64_t>(std::llround(a), std::llround(b))(rng));
      break;
    case kind::normal:
      v = std::normal_distribution<double>(a, b)(rng);
      break;
    case kind::exponential:
      v = std::exponential_distribution<double>(1.0 / std::max(a, 1e-9))(rng);
      break;
  }
  auto r = static_cast<std::int64_t>(std::llround(v));
  return r < min_value ? min_value : r;
}

double int_dist::mean() const {
  switch (k) {
    case kind::uniform:
      return (a + b) / 2;
    default:
      return a;
  }
}

std::string int_dist::to_string() const {
  char buf[96];
  switch (k) {
    case kind::fixed:
      std::snprintf(buf, sizeof buf, "fixed:%g", a);
      break;
    case kind::uniform:
      std::snprintf(buf, sizeof buf, "uniform:%g:%g", a, b);
      break;
    case kind::normal:
      std::snprintf(buf, sizeof buf, "normal:%g:%g", a, b);
      break;
    case kind::exponential:
      std::snprintf(buf, sizeof buf, "exponential:%g", a);
      break;
  }
  return buf;
}

}  // namespace meridian::loadtest
