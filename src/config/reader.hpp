// The YAML walker of the config loader: every error names file:line:col and the full key.
// Used while loading, on the loading thread.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cctype>
#include <cstdint>
#include <string>
#include <vector>

#include "meridian/common/log.hpp"
#include "meridian/config/config.hpp"
#include "meridian/config/units.hpp"

namespace meridian::config {

inline std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Walks the YAML tree with the key path and source position at hand, so every error names
// file:line:col and the full key.
class reader {
 public:
  explicit reader(std::string source) : source_(std::move(source)) {}

  [[noreturn]] void fail(const YAML::Node& node, const std::string& key,
                         const std::string& why) const {
    std::string where = source_;
    if (node.IsDefined() && node.Mark().line >= 0) {
      where += common::cat(':', node.Mark().line + 1, ':', node.Mark().column + 1);
    }
    throw config_error(
        common::cat(where, ": ", key.empty() ? std::string("(top)") : key, ": ", why));
  }

  void only_keys(const YAML::Node& node, const std::string& key,
                 std::initializer_list<std::string_view> allowed) const {
    if (!node.IsMap()) fail(node, key, "expected a mapping");
    std::set<std::string> seen;
    for (const auto& kv : node) {
      auto name = kv.first.as<std::string>();
      // yaml-cpp keeps the first of duplicate keys silently; a repeated key is a mistake.
      if (!seen.insert(name).second) fail(kv.first, join(key, name), "duplicate key");
      if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
        std::string list;
        for (auto a : allowed) list += common::cat(list.empty() ? "" : ", ", a);
        fail(kv.first, join(key, name), common::cat("unknown key (expected one of: ", list, ")"));
      }
    }
  }

  static std::string join(const std::string& parent, std::string_view child) {
    return parent.empty() ? std::string(child) : common::cat(parent, '.', child);
  }

  std::string scalar(const YAML::Node& node, const std::string& key) const {
    if (!node.IsScalar()) fail(node, key, "expected a scalar value");
    return node.Scalar();
  }

  duration dur(const YAML::Node& node, const std::string& key) const {
    auto v = parse_duration(scalar(node, key));
    if (!v)
      fail(node, key,
           common::cat("invalid duration '", node.Scalar(), "' (write e.g. 250ms, 2s, 1m)"));
    return *v;
  }

  std::uint64_t size(const YAML::Node& node, const std::string& key) const {
    auto v = parse_size(scalar(node, key));
    if (!v)
      fail(node, key,
           common::cat("invalid size '", node.Scalar(), "' (write e.g. 64KiB, 8MiB, 1000)"));
    return *v;
  }

  std::uint64_t count(const YAML::Node& node, const std::string& key, std::uint64_t min,
                      std::uint64_t max) const {
    auto s = scalar(node, key);
    std::uint64_t v = 0;
    auto res = std::from_chars(s.data(), s.data() + s.size(), v);
    if (res.ec != std::errc{} || res.ptr != s.data() + s.size())
      fail(node, key, common::cat("expected a whole number, got '", s, "'"));
    if (v < min || v > max)
      fail(node, key, common::cat("must be between ", min, " and ", max, ", got ", v));
    return v;
  }

  bool boolean(const YAML::Node& node, const std::string& key) const {
    auto s = scalar(node, key);
    if (s == "true" || s == "on" || s == "yes") return true;
    if (s == "false" || s == "off" || s == "no") return false;
    fail(node, key, common::cat("expected true or false, got '", s, "'"));
  }

  host_port address(const YAML::Node& node, const std::string& key) const {
    auto v = parse_host_port(scalar(node, key));
    if (!v)
      fail(node, key,
           common::cat("invalid address '", node.Scalar(),
                       "' (write host:port, e.g. 127.0.0.1:8080)"));
    return *v;
  }

  const std::string& source() const { return source_; }

 private:
  std::string source_;
};

}  // namespace meridian::config
