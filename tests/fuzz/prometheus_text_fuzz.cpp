// libFuzzer target for the Prometheus text parser and the load reading built on it: never a
// crash or a view outside the input, every non-blank non-comment line counted exactly once,
// lines parsed independently of each other, and load signals always finite and in range.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "meridian/probe/load_reading.hpp"
#include "meridian/probe/prometheus_text.hpp"

using namespace meridian::probe;

namespace {

bool inside(std::string_view part, std::string_view whole) {
  return part.data() >= whole.data() && part.size() <= whole.size() &&
         part.data() - whole.data() <= static_cast<std::ptrdiff_t>(whole.size() - part.size());
}

// The lines for_each_sample must report on, counted the obvious way.
std::size_t content_lines(std::string_view text) {
  std::size_t n = 0;
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const std::size_t first = line.find_first_not_of(" \t");
    if (line.size() > max_line_bytes)
      ++n;
    else if (first != std::string_view::npos && line[first] != '#')
      ++n;
  }
  return n;
}

bool valid_signal(const std::optional<double>& v) {
  return !v || (std::isfinite(*v) && *v >= 0 && !std::signbit(*v));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  std::size_t seen = 0;
  const parse_stats stats = for_each_sample(text, [&](const sample& s) {
    ++seen;
    if (s.name.empty() || !inside(s.name, text)) std::abort();
    if (!s.labels.empty() && !inside(s.labels, text)) std::abort();
    if (s.name.find_first_of(" \t\r\n{}\"") != std::string_view::npos) std::abort();
    if (s.labels.find('\n') != std::string_view::npos) std::abort();
    // Labels handed out are a well-formed list: its first label always has a value.
    const std::size_t eq = s.labels.find('=');
    if (eq != std::string_view::npos) {
      std::string_view key = s.labels.substr(0, eq);
      while (!key.empty() && (key.front() == ' ' || key.front() == '\t')) key.remove_prefix(1);
      while (!key.empty() && (key.back() == ' ' || key.back() == '\t')) key.remove_suffix(1);
      if (!label_value(s.labels, key)) std::abort();
    }
  });
  if (seen != stats.samples) std::abort();
  if (stats.samples + stats.malformed != content_lines(text)) std::abort();

  // Lines are independent: cutting after any newline changes nothing in the totals.
  const std::size_t nl = text.find('\n', size / 2);
  if (nl != std::string_view::npos) {
    const auto a = for_each_sample(text.substr(0, nl + 1), [](const sample&) {});
    const auto b = for_each_sample(text.substr(nl + 1), [](const sample&) {});
    if (a.samples + b.samples != stats.samples || a.malformed + b.malformed != stats.malformed)
      std::abort();
  }

  // The input as a label list, the key taken from its first bytes.
  const std::size_t key_len = size == 0 ? 0 : data[0] % 16;
  const std::string_view key = text.substr(size == 0 ? 0 : 1, key_len);
  (void)label_value(text, key);
  (void)label_value(text, "model_name");

  static const load_mapping defaults = load_mapping::defaults();
  const load_reading r = extract_load(text, defaults);
  if (r.samples != stats.samples || r.malformed != stats.malformed) std::abort();
  if (!valid_signal(r.waiting) || !valid_signal(r.running) || !valid_signal(r.kv_usage))
    std::abort();
  if (r.kv_usage && *r.kv_usage > 1) std::abort();
  return 0;
}
