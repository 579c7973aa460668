#include "meridian/routing/route_table.hpp"

namespace meridian::routing {
namespace {
// A small cursor over JSON text that skips values without building them.
struct scanner {
  std::string_view s;
  std::size_t i = 0;
  int depth_budget = 64;

  bool at_end() const { return i >= s.size(); }
  void ws() {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) ++i;
  }
  // On success `out` is the raw string contents (escapes left as written).
  bool string(std::string_view& out) {
    if (at_end() || s[i] != '"') return false;
    std::size_t start = ++i;
    while (i < s.size()) {
      char c = s[i];
      if (c == '\\') {
        i += 2;
        continue;
      }
      if (c == '"') {
        out = s.substr(start, i - start);
        ++i;
        return true;
      }
      if (static_cast<unsigned char>(c) < 0x20) return false;
      ++i;
    }
    return false;
  }
  bool skip_value() {
    ws();
    if (at_end()) return false;
    char c = s[i];
    if (c == '"') {
      std::string_view ignored;
      return string(ignored);
    }
    if (c == '{' || c == '[') {
      if (--depth_budget < 0) return false;
      char close = c == '{' ? '}' : ']';
      ++i;
      ws();
      if (!at_end() && s[i] == close) {
        ++i;
        ++depth_budget;
        return true;
      }
      while (true) {
        if (c == '{') {
          std::string_view key;
          ws();
          if (!string(key)) return false;
          ws();
          if (at_end() || s[i] != ':') return false;
          ++i;
        }
        if (!skip_value()) return false;
        ws();
        if (at_end()) return false;
        if (s[i] == ',') {
          ++i;
          continue;
        }
        if (s[i] == close) {
          ++i;
          ++depth_budget;
          return true;
        }
        return false;
      }
    }
    // number, true, false, null: run of literal characters
    std::size_t start = i;
    while (i < s.size() && s[i] != ',' && s[i] != '}' && s[i] != ']' && s[i] != ' ' &&
           s[i] != '\n' && s[i] != '\r' && s[i] != '\t')
      ++i;
    return i > start && i < s.size();
  }
};
}  // namespace

std::optional<std::string_view> find_json_model(std::string_view body) {
  scanner sc{body};
  sc.ws();
  if (sc.at_end() || body[sc.i] != '{') return std::nullopt;
  ++sc.i;
  while (true) {
    sc.ws();
    std::string_view key;
    if (!sc.string(key)) return std::nullopt;
    sc.ws();
    if (sc.at_end() || body[sc.i] != ':') return std::nullopt;
    ++sc.i;
    sc.ws();
    if (key == "model") {
      std::string_view value;
      if (sc.string(value)) return value;
      return std::nullopt;  // "model" present but not a string
    }
    if (!sc.skip_value()) return std::nullopt;
    sc.ws();
    if (sc.at_end() || body[sc.i] != ',') return std::nullopt;
    ++sc.i;
  }
}

}  // namespace meridian::routing
