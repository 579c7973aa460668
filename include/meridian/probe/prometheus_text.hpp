// Parses the Prometheus text exposition format (0.0.4) scraped from backends; stateless
// functions, called on the control thread, whose results only borrow the text they were given.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace meridian::probe {

// One sample line. The views point into the text given to for_each_sample and live as long as
// it does. Labels are the raw text between the braces (escapes still in place, checked to be
// well-formed), empty when the line has none; read one with label_value.
struct sample {
  std::string_view name;
  std::string_view labels;
  double value = 0;
};

struct parse_stats {
  std::size_t samples = 0;
  std::size_t malformed = 0;  // lines that are neither samples, comments nor blank
};

// A line longer than this is malformed without being read: no exporter writes one, and a cap
// keeps one runaway line from costing more than its share of a scrape.
inline constexpr std::size_t max_line_bytes = 64 * 1024;

class sample_callback;

// Anything for_each_sample can call, except a sample_callback itself: copying one must not wrap
// it in another.
template <class F>
concept sample_visitor = std::is_invocable_v<F&, const sample&> &&
    !std::is_same_v<std::remove_cvref_t<F>, sample_callback>;

// A non-owning reference to a callable taking const sample&, so each scrape costs no
// std::function allocation. It must not outlive the callable (a parameter never does).
class sample_callback {
 public:
  template <sample_visitor F>
  sample_callback(F&& f)  // NOLINT(google-explicit-constructor): passed as a lambda
      : object_(const_cast<void*>(static_cast<const void*>(std::addressof(f)))),
        call_([](void* o, const sample& s) { (*static_cast<std::remove_reference_t<F>*>(o))(s); }) {
  }

  void operator()(const sample& s) const { call_(object_, s); }

 private:
  void* object_;
  void (*call_)(void*, const sample&);
};

// Calls fn for every well-formed sample line, in order. Comment lines (HELP and TYPE included)
// and blank lines are skipped; any other line that does not parse, or is longer than
// max_line_bytes, is counted as malformed and skipped. Never throws, never allocates; linear in
// the size of the text whatever it holds. Lines may end in "\n" or "\r\n"; the last one needs
// neither. Accepted: metric names [a-zA-Z_:][a-zA-Z0-9_:]*, label values in double quotes with
// the escapes \\ \" \n and valid UTF-8, values as Go's ParseFloat reads them in decimal (NaN,
// +Inf, -Inf and exponents included), and an optional integer timestamp, which is ignored.
parse_stats for_each_sample(std::string_view text, sample_callback fn);

// The unescaped value of the first label called key in a sample's labels; nullopt when there is
// none or when labels is not a well-formed label list.
std::optional<std::string> label_value(std::string_view labels, std::string_view key);

}  // namespace meridian::probe
