// libFuzzer target for the body model scanner: any split of the body gives the answer of one
// feed, and the answer agrees with a real JSON parser (Boost.JSON) on validity and on the model.
// The first two input bytes choose where to split; the rest is the body.
#include <boost/json.hpp>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "meridian/routing/model_scanner.hpp"

using meridian::routing::model_scanner;
using st = model_scanner::state;

namespace {
struct answer {
  st state;
  bool has_model;
  std::string model;
  bool operator==(const answer&) const = default;
};

answer read(model_scanner& s) {
  return {s.current(), s.has_model(), std::string(s.model())};
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  std::string_view body(reinterpret_cast<const char*>(data) + 2, size - 2);
  const std::size_t cut = (data[0] | (data[1] << 8)) % (body.size() + 1);

  static model_scanner one, split, bytewise;
  one.reset();
  split.reset();
  bytewise.reset();
  one.feed(body);
  split.feed(body.substr(0, cut));
  auto mid = read(split);
  split.feed(body.substr(cut));
  for (char c : body) bytewise.feed(std::string_view(&c, 1));
  const auto before_finish = read(one);
  if (read(split) != before_finish || read(bytewise) != before_finish) std::abort();
  // Only scanning can change, and only once: a verdict is never taken back.
  if (mid.state != st::scanning && mid.state != st::done && mid.state != before_finish.state)
    std::abort();
  one.finish();
  const auto a = read(one);
  if (before_finish.state != st::scanning && before_finish.state != a.state) std::abort();
  if (a.state == st::scanning) std::abort();
  if (a.model.size() > 256) std::abort();
  if (a.has_model && a.state != st::done && a.state != st::duplicate && a.state != st::invalid)
    std::abort();

  boost::json::parse_options opts;
  opts.max_depth = model_scanner::max_depth;
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(body, ec, {}, opts);
  // Boost.JSON refuses exponents beyond what it can hold; JSON itself sets no limit.
  if (ec == boost::json::error::exponent_overflow) return 0;
  if (ec) {
    // Anything a real parser refuses is never a routable body (the scanner may have stopped at
    // a verdict, duplicate or too_long, before the part that makes it invalid).
    if (a.state == st::done) std::abort();
    return 0;
  }
  if (!v.is_object()) {
    if (a.state != st::not_object) std::abort();
    return 0;
  }
  // Boost.JSON keeps the last of duplicate keys; the scanner refuses to choose.
  if (a.state == st::duplicate || a.state == st::too_long || a.state == st::too_deep) return 0;
  if (a.state != st::done) std::abort();
  const auto* m = v.as_object().if_contains("model");
  const bool is_string = m && m->is_string();
  if (a.has_model != is_string) std::abort();
  if (is_string && a.model != std::string_view(m->as_string())) std::abort();
  return 0;
}
