#include "load/scenario.hpp"

#include <yaml-cpp/yaml.h>

#include <boost/json.hpp>
#include <stdexcept>
#include <string>

namespace meridian::loadtest {

namespace json = boost::json;

namespace {
json::value to_json(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map: {
      json::object o;
      for (auto it = n.begin(); it != n.end(); ++it)
        o[it->first.as<std::string>()] = to_json(it->second);
      return o;
    }
    case YAML::NodeType::Sequence: {
      json::array a;
      for (auto&& x : n) a.push_back(to_json(x));
      return a;
    }
    case YAML::NodeType::Scalar: {
      const std::string& s = n.Scalar();
      if (n.Tag() != "!") {  // unquoted
        if (s == "true") return true;
        if (s == "false") return false;
        if (s == "null" || s == "~") return nullptr;
        if (auto i = parse_int(s)) return *i;
        if (auto d = parse_double(s)) return *d;
      }
      return json::string(s);
    }
    default:
      return nullptr;
  }
}

std::string scalar(const YAML::Node& n) {
  return n.IsScalar() ? n.Scalar() : std::string();
}

// One key of the `load:` map and its value; the parsers throw std::invalid_argument naming the key.
struct entry {
  const std::string& key;
  const YAML::Node& node;
  const std::string& s;  // the scalar value, empty for maps and lists

  double num() const {
    auto d = parse_double(s);
    if (!d) throw std::invalid_argument("load." + key + " must be a number");
    return *d;
  }
  double dur() const {
    auto d = parse_duration(s);
    if (!d) throw std::invalid_argument("load." + key + " must be a duration like 30s");
    return static_cast<double>(d->count()) / 1e9;
  }
  int_dist dist() const {
    auto d = int_dist::parse(s);
    if (!d)
      throw std::invalid_argument("load." + key + " must be a distribution like uniform:64:512");
    return *d;
  }
};

void apply_profile(const YAML::Node& v, load_config& cfg) {
  if (!v.IsSequence())
    throw std::invalid_argument("load.profile must be a list of {at, rate, ramp}");
  cfg.profile_points.clear();
  for (auto&& p : v) {
    auto at = parse_duration(scalar(p["at"]));
    auto rate = parse_double(scalar(p["rate"]));
    if (!at || !rate)
      throw std::invalid_argument("load.profile entries need 'at: 10s' and 'rate: N'");
    cfg.profile_points.push_back(
        {static_cast<double>(at->count()) / 1e9, *rate, p["ramp"] && p["ramp"].as<bool>()});
  }
}

// Target and load-shape keys; false when e is not one of them.
bool apply_shape_key(const entry& e, load_config& cfg) {
  const std::string& k = e.key;
  if (k == "url")
    cfg.url = e.s;
  else if (k == "path")
    cfg.url = cfg.url.substr(0, cfg.url.find('/', 7)) + e.s;
  else if (k == "rate")
    cfg.rate = e.num();
  else if (k == "duration")
    cfg.duration_s = e.dur();
  else if (k == "warmup")
    cfg.warmup_s = e.dur();
  else if (k == "timeout")
    cfg.timeout_s = e.dur();
  else if (k == "arrival") {
    auto a = parse_arrival_kind(e.s);
    if (!a) throw std::invalid_argument("load.arrival must be constant|poisson|gamma");
    cfg.arrival = *a;
  } else if (k == "burstiness")
    cfg.burstiness = e.num();
  else if (k == "connections")
    cfg.connections = static_cast<int>(e.num());
  else if (k == "threads")
    cfg.threads = static_cast<int>(e.num());
  else if (k == "closed")
    cfg.closed = e.node.as<bool>();
  else if (k == "profile")
    apply_profile(e.node, cfg);
  else if (k == "slo")
    cfg.slo_text = e.s;
  else if (k == "label")
    cfg.label = e.s;
  else
    return false;
  return true;
}

// Request keys (OpenAI, plain HTTP, storage); false when e is not one of them.
bool apply_request_key(const entry& e, load_config& cfg) {
  const std::string& k = e.key;
  const std::string& s = e.s;
  if (k == "openai") {
    if (s == "chat")
      cfg.api = openai_api::chat;
    else if (s == "completions")
      cfg.api = openai_api::completions;
    else if (s == "embeddings")
      cfg.api = openai_api::embeddings;
    else
      throw std::invalid_argument("load.openai must be chat|completions|embeddings");
  } else if (k == "stream")
    cfg.stream = e.node.as<bool>();
  else if (k == "prompt_tokens")
    cfg.prompt_tokens = e.dist();
  else if (k == "max_tokens")
    cfg.max_tokens = e.dist();
  else if (k == "shared_prefix")
    cfg.shared_prefix = static_cast<int>(e.num());
  else if (k == "conversations")
    cfg.conversations = static_cast<int>(e.num());
  else if (k == "system_prompts")
    cfg.system_prompts = static_cast<int>(e.num());
  else if (k == "system_tokens")
    cfg.system_tokens = static_cast<int>(e.num());
  else if (k == "turns")
    cfg.turns = static_cast<int>(e.num());
  else if (k == "model")
    cfg.model = s;
  else if (k == "method")
    cfg.method = s;
  else if (k == "body")
    cfg.body = s;
  else if (k == "storage")
    cfg.storage = e.node.as<bool>();
  else if (k == "setup")
    cfg.storage_setup = e.node.as<bool>();
  else if (k == "objects")
    cfg.objects = static_cast<int>(e.num());
  else if (k == "object_size") {
    auto z = parse_size(s);
    if (!z) throw std::invalid_argument("load.object_size must be a size like 64KiB");
    cfg.object_size = *z;
  } else if (k == "put_ratio")
    cfg.put_ratio = e.num();
  else if (k == "range_ratio")
    cfg.range_ratio = e.num();
  else
    return false;
  return true;
}
}  // namespace

std::string yaml_file_to_json(const std::string& path) {
  return json::serialize(to_json(YAML::LoadFile(path)));
}

std::string apply_scenario(const std::string& path, load_config& cfg) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const std::exception& e) {
    return "cannot load scenario " + path + ": " + e.what();
  }
  YAML::Node l = root["load"];
  if (!l || !l.IsMap()) return "scenario " + path + " has no 'load:' map";
  try {
    for (auto it = l.begin(); it != l.end(); ++it) {
      const std::string k = it->first.as<std::string>();
      const YAML::Node& v = it->second;
      const std::string s = scalar(v);
      const entry e{k, v, s};
      if (!apply_shape_key(e, cfg) && !apply_request_key(e, cfg))
        throw std::invalid_argument("unknown key load." + k);
    }
  } catch (const std::exception& e) {
    return std::string("scenario ") + path + ": " + e.what();
  }
  if (cfg.label.empty() && root["name"]) cfg.label = scalar(root["name"]);
  return {};
}

}  // namespace meridian::loadtest
