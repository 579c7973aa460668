#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>

#include "config/sections.hpp"

namespace meridian::config {
namespace {
bool secret_key(std::string key) {
  std::transform(key.begin(), key.end(), key.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (key.ends_with("_file")) return false;
  for (const char* word :
       {"token", "secret", "password", "api_key", "api-key", "apikey", "authorization"})
    if (key.find(word) != std::string::npos) return true;
  return false;
}

void redact(YAML::Node n) {
  if (n.IsSequence()) {
    for (auto item : n) redact(item);
  } else if (n.IsMap()) {
    for (auto kv : n) {
      if (kv.first.IsScalar() && secret_key(kv.first.Scalar()))
        kv.second = "<redacted>";
      else
        redact(kv.second);
    }
  }
}
}  // namespace

std::string redacted_yaml(const YAML::Node& root) {
  YAML::Node copy = YAML::Clone(root);
  redact(copy);
  YAML::Emitter out;
  out << copy;
  return std::string(out.c_str()) + "\n";
}

}  // namespace meridian::config
