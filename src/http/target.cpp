#include "meridian/http/target.hpp"

#include <array>

#include "meridian/http/parser.hpp"

namespace meridian::http {
namespace {
// Characters of an origin-form target other than pct-encoded (RFC 3986 pchar, "/" and "?"):
// unreserved / sub-delims / ":" / "@" / "/" / "?". No fragment, no space, no controls.
constexpr std::array<bool, 256> make_target_char() {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
  for (char c : std::string_view("-._~!$&'()*+,;=:@/?")) t[static_cast<unsigned char>(c)] = true;
  return t;
}
constexpr auto target_char = make_target_char();

constexpr bool is_hex(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

}  // namespace

bool valid_origin_form(std::string_view t) {
  if (t.empty() || t.front() != '/') return false;
  for (std::size_t i = 0; i < t.size(); ++i) {
    auto c = static_cast<unsigned char>(t[i]);
    if (c == '%') {
      if (i + 2 >= t.size() || !is_hex(static_cast<unsigned char>(t[i + 1])) ||
          !is_hex(static_cast<unsigned char>(t[i + 2])))
        return false;
      i += 2;
    } else if (!target_char[c]) {
      return false;
    }
  }
  return true;
}

bool parse_target(std::string_view t, std::string_view method, target_parts& out) {
  out = {};
  if (t.empty()) return false;
  if (t.front() == '/') {
    if (!valid_origin_form(t)) return false;
    out.path = t;
    return true;
  }
  if (t == "*" && method == "OPTIONS") {
    out.path = t;
    return true;
  }
  // absolute-form: scheme "://" authority path-abempty [ "?" query ]; no fragment either.
  std::size_t skip = 0;
  if (t.size() > 7 && iequals(t.substr(0, 7), "http://"))
    skip = 7;
  else if (t.size() > 8 && iequals(t.substr(0, 8), "https://"))
    skip = 8;
  if (skip == 0 || t.find('#') != std::string_view::npos) return false;
  auto rest = t.substr(skip);
  auto slash = rest.find_first_of("/?");
  out.authority = rest.substr(0, slash);
  for (unsigned char c : out.authority)
    if (c <= 0x20 || c >= 0x7f || c == '@') return false;
  if (out.authority.empty()) return false;
  out.path = slash == std::string_view::npos ? std::string_view("/") : rest.substr(slash);
  // "http://h?q" has no path: keep the rule simple. The path is forwarded in origin-form, so
  // it obeys the same rule as an origin-form target.
  return out.path.front() != '?' && valid_origin_form(out.path);
}

}  // namespace meridian::http
