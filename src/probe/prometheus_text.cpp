#include "meridian/probe/prometheus_text.hpp"

#include <charconv>
#include <cstdint>
#include <limits>
#include <system_error>

namespace meridian::probe {
namespace {

constexpr std::size_t npos = std::string_view::npos;

constexpr bool is_blank(char c) {
  return c == ' ' || c == '\t';
}
constexpr bool is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
constexpr bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

std::size_t skip_blanks(std::string_view s, std::size_t i) {
  while (i < s.size() && is_blank(s[i])) ++i;
  return i;
}

// Where the name starting at i ends (i itself when there is none). Label names are metric names
// without the colon.
std::size_t name_end(std::string_view s, std::size_t i, bool colon) {
  if (i >= s.size() || !(is_alpha(s[i]) || (colon && s[i] == ':'))) return i;
  ++i;
  while (i < s.size() && (is_alpha(s[i]) || is_digit(s[i]) || (colon && s[i] == ':'))) ++i;
  return i;
}

// The length of the UTF-8 sequence at i, 0 if invalid (RFC 3629 §4: no overlong forms, no
// surrogates, nothing above U+10FFFF). Backends echo model names from their own config here.
std::size_t utf8_length(std::string_view s, std::size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  std::size_t more = 0;
  unsigned char lo = 0x80, hi = 0xbf;
  if (c >= 0xc2 && c <= 0xdf) {
    more = 1;
  } else if (c >= 0xe0 && c <= 0xef) {
    more = 2;
    if (c == 0xe0) lo = 0xa0;
    if (c == 0xed) hi = 0x9f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    more = 3;
    if (c == 0xf0) lo = 0x90;
    if (c == 0xf4) hi = 0x8f;
  } else {
    return 0;
  }
  if (s.size() - i - 1 < more) return 0;
  for (std::size_t k = 1; k <= more; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if (b < lo || b > hi) return 0;
    lo = 0x80;
    hi = 0xbf;
  }
  return more + 1;
}

// s[i] is the opening quote; returns the index just past the closing one, npos if the value is
// unterminated, has an escape other than \\ \" \n, or is not UTF-8.
std::size_t quoted_end(std::string_view s, std::size_t i) {
  for (++i; i < s.size();) {
    const char c = s[i];
    if (c == '"') return i + 1;
    if (c == '\\') {
      if (i + 1 >= s.size()) return npos;
      const char e = s[i + 1];
      if (e != '\\' && e != '"' && e != 'n') return npos;
      i += 2;
    } else if (c == '\n') {
      return npos;
    } else if (static_cast<unsigned char>(c) < 0x80) {
      ++i;
    } else {
      const std::size_t n = utf8_length(s, i);
      if (n == 0) return npos;
      i += n;
    }
  }
  return npos;
}

// Reads name="value" pairs separated by commas (a trailing one allowed, blanks allowed around
// every token) from i, calling on_label(name, raw value) for each. Stops at a '}' outside quotes
// or at the end of s and returns where it stopped; npos if the list is malformed.
template <class F>
std::size_t scan_labels(std::string_view s, std::size_t i, F&& on_label) {
  for (;;) {
    i = skip_blanks(s, i);
    if (i >= s.size() || s[i] == '}') return i;
    const std::size_t n = name_end(s, i, false);
    if (n == i) return npos;
    const std::string_view name = s.substr(i, n - i);
    i = skip_blanks(s, n);
    if (i >= s.size() || s[i] != '=') return npos;
    i = skip_blanks(s, i + 1);
    if (i >= s.size() || s[i] != '"') return npos;
    const std::size_t q = quoted_end(s, i);
    if (q == npos) return npos;
    on_label(name, s.substr(i + 1, q - i - 2));
    i = skip_blanks(s, q);
    if (i < s.size() && s[i] == ',') {
      ++i;
    } else if (i < s.size() && s[i] != '}') {
      return npos;
    }
  }
}

bool equals_ignore_case(std::string_view s, std::string_view lower) {
  if (s.size() != lower.size()) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i] >= 'A' && s[i] <= 'Z' ? static_cast<char>(s[i] - 'A' + 'a') : s[i];
    if (c != lower[i]) return false;
  }
  return true;
}

// The exporters are Go, Python and Rust; Go's ParseFloat is the reference reader. Its hex floats
// and underscores are refused (no exporter writes them), and so is anything out of double's
// range: ParseFloat reports that as an error too.
bool parse_value(std::string_view t, double& out) {
  if (equals_ignore_case(t, "nan")) {
    out = std::numeric_limits<double>::quiet_NaN();
    return true;
  }
  bool negative = false;
  if (!t.empty() && (t[0] == '+' || t[0] == '-')) {
    negative = t[0] == '-';
    t.remove_prefix(1);
  }
  double v = 0;
  if (equals_ignore_case(t, "inf") || equals_ignore_case(t, "infinity")) {
    v = std::numeric_limits<double>::infinity();
  } else {
    // from_chars would also take "inf", "nan(...)" and a second sign; none of them belong here.
    if (t.empty() || !(is_digit(t[0]) || t[0] == '.')) return false;
    const char* end = t.data() + t.size();
    auto [ptr, ec] = std::from_chars(t.data(), end, v, std::chars_format::general);
    if (ec != std::errc() || ptr != end) return false;
  }
  out = negative ? -v : v;
  return true;
}

// Milliseconds since the epoch as a signed 64-bit integer; the value is not used.
bool valid_timestamp(std::string_view t) {
  if (!t.empty() && t[0] == '+') {
    t.remove_prefix(1);
    if (t.empty() || !is_digit(t[0])) return false;  // from_chars would take "+-1"
  }
  std::int64_t ms = 0;
  const char* end = t.data() + t.size();
  auto [ptr, ec] = std::from_chars(t.data(), end, ms);
  return ec == std::errc() && ptr == end;
}

std::size_t token_end(std::string_view s, std::size_t i) {
  while (i < s.size() && !is_blank(s[i])) ++i;
  return i;
}

// One line without its terminator, known not to be blank or a comment.
bool parse_line(std::string_view line, sample& out) {
  std::size_t i = skip_blanks(line, 0);
  const std::size_t n = name_end(line, i, true);
  if (n == i) return false;
  out.name = line.substr(i, n - i);
  out.labels = {};
  i = skip_blanks(line, n);
  if (i < line.size() && line[i] == '{') {
    const std::size_t close = scan_labels(line, i + 1, [](std::string_view, std::string_view) {});
    if (close == npos || close >= line.size()) return false;
    out.labels = line.substr(i + 1, close - i - 1);
    i = skip_blanks(line, close + 1);
  } else if (i == n) {
    return false;  // "name-1" is not the name "name" with the value -1
  }
  const std::size_t value_end = token_end(line, i);
  if (value_end == i || !parse_value(line.substr(i, value_end - i), out.value)) return false;
  i = skip_blanks(line, value_end);
  if (i == line.size()) return true;
  const std::size_t stamp_end = token_end(line, i);
  if (!valid_timestamp(line.substr(i, stamp_end - i))) return false;
  return skip_blanks(line, stamp_end) == line.size();
}

}  // namespace

parse_stats for_each_sample(std::string_view text, sample_callback fn) {
  parse_stats stats;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t nl = text.find('\n', pos);
    if (nl == npos) nl = text.size();
    std::string_view line = text.substr(pos, nl - pos);
    pos = nl + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.size() > max_line_bytes) {
      ++stats.malformed;
      continue;
    }
    const std::size_t first = skip_blanks(line, 0);
    if (first == line.size() || line[first] == '#') continue;
    sample s;
    if (!parse_line(line, s)) {
      ++stats.malformed;
      continue;
    }
    ++stats.samples;
    fn(s);
  }
  return stats;
}

std::optional<std::string> label_value(std::string_view labels, std::string_view key) {
  std::string_view raw;
  bool found = false;
  const std::size_t end = scan_labels(labels, 0, [&](std::string_view name, std::string_view v) {
    if (!found && name == key) {
      raw = v;
      found = true;
    }
  });
  if (end != labels.size() || !found) return std::nullopt;
  std::string value;
  value.reserve(raw.size());
  for (std::size_t i = 0; i < raw.size(); ++i) {
    // The escapes were checked by scan_labels: a backslash always has one of three bytes after it.
    if (raw[i] == '\\') {
      ++i;
      value.push_back(raw[i] == 'n' ? '\n' : raw[i]);
    } else {
      value.push_back(raw[i]);
    }
  }
  return value;
}

}  // namespace meridian::probe
