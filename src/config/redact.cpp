#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cstring>

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

// A value that is a credential whatever its key is called: a bearer or basic credential, a
// provider's key by its well-known prefix (OpenAI sk-, Hugging Face hf_, GitHub ghp_, Slack xox,
// AWS AKIA, Google AIza), a JWT, or a URL with a password in it.
bool looks_secret(const std::string& v) {
  for (const char* prefix :
       {"Bearer ", "bearer ", "Basic ", "basic ", "sk-", "sk_", "rk_", "pk_", "hf_", "ghp_", "gho_",
        "ghs_", "github_pat_", "xox", "AKIA", "AIza", "eyJ"})
    if (v.starts_with(prefix) && v.size() > std::strlen(prefix) + 3) return true;
  auto scheme = v.find("://");
  if (scheme != std::string::npos) {
    auto at = v.find('@', scheme);
    auto colon = v.find(':', scheme + 3);
    auto slash = v.find('/', scheme + 3);
    if (at != std::string::npos && colon < at && (slash == std::string::npos || at < slash))
      return true;
  }
  return false;
}

// `all`: every scalar below is a value to hide (a headers map: header-match values and headers
// sent upstream are often credentials, and nothing says which).
void redact(YAML::Node n, bool all) {
  if (n.IsScalar()) {
    if (all || looks_secret(n.Scalar())) n = "<redacted>";
  } else if (n.IsSequence()) {
    for (auto item : n) redact(item, all);
  } else if (n.IsMap()) {
    for (auto kv : n) {
      if (!kv.first.IsScalar()) continue;
      const auto& key = kv.first.Scalar();
      if (secret_key(key))
        kv.second = "<redacted>";
      else
        redact(kv.second, all || key == "headers");
    }
  }
}
}  // namespace

std::string redacted_yaml(const YAML::Node& root) {
  YAML::Node copy = YAML::Clone(root);
  redact(copy, false);
  YAML::Emitter out;
  out << copy;
  return std::string(out.c_str()) + "\n";
}

}  // namespace meridian::config
