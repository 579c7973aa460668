#include "load/scenario.hpp"

#include <yaml-cpp/yaml.h>

#include <boost/json.hpp>

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
      auto need_num = [&](double& out) {
        auto d = parse_double(s);
        if (!d) throw std::invalid_argument("load." + k + " must be a number");
        out = *d;
      };
      auto need_dur = [&](double& out) {
        auto d = parse_duration(s);
        if (!d) throw std::invalid_argument("load." + k + " must be a duration like 30s");
        out = static_cast<double>(d->count()) / 1e9;
      };
      auto need_dist = [&](int_dist& out) {
        auto d = int_dist::parse(s);
        if (!d)
          throw std::invalid_argument("load." + k + " must be a distribution like uniform:64:512");
        out = *d;
      };
      double d = 0;
      if (k == "url")
        cfg.url = s;
      else if (k == "path")
        cfg.url = cfg.url.substr(0, cfg.url.find('/', 7)) + s;
      else if (k == "rate")
        need_num(cfg.rate);
      else if (k == "duration")
        need_dur(cfg.duration_s);
      else if (k == "warmup")
        need_dur(cfg.warmup_s);
      else if (k == "timeout")
        need_dur(cfg.timeout_s);
      else if (k == "arrival") {
        auto a = parse_arrival_kind(s);
        if (!a) throw std::invalid_argument("load.arrival must be constant|poisson|gamma");
        cfg.arrival = *a;
      } else if (k == "burstiness")
        need_num(cfg.burstiness);
      else if (k == "connections")
        need_num(d), cfg.connections = static_cast<int>(d);
      else if (k == "threads")
        need_num(d), cfg.threads = static_cast<int>(d);
      else if (k == "closed")
        cfg.closed = v.as<bool>();
      else if (k == "openai") {
        if (s == "chat")
          cfg.api = openai_api::chat;
        else if (s == "completions")
          cfg.api = openai_api::completions;
        else if (s == "embeddings")
          cfg.api = openai_api::embeddings;
        else
          throw std::invalid_argument("load.openai must be chat|completions|embeddings");
      } else if (k == "stream")
        cfg.stream = v.as<bool>();
      else if (k == "prompt_tokens")
        need_dist(cfg.prompt_tokens);
      else if (k == "max_tokens")
        need_dist(cfg.max_tokens);
      else if (k == "shared_prefix")
        need_num(d), cfg.shared_prefix = static_cast<int>(d);
      else if (k == "model")
        cfg.model = s;
      else if (k == "slo")
        cfg.slo_text = s;
      else if (k == "method")
        cfg.method = s;
      else if (k == "body")
        cfg.body = s;
      else if (k == "storage")
        cfg.storage = v.as<bool>();
      else if (k == "objects")
        need_num(d), cfg.objects = static_cast<int>(d);
      else if (k == "object_size") {
        auto z = parse_size(s);
        if (!z) throw std::invalid_argument("load.object_size must be a size like 64KiB");
        cfg.object_size = *z;
      } else if (k == "put_ratio")
        need_num(cfg.put_ratio);
      else if (k == "range_ratio")
        need_num(cfg.range_ratio);
      else if (k == "profile") {
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
      } else if (k == "label")
        cfg.label = s;
      else
        throw std::invalid_argument("unknown key load." + k);
    }
  } catch (const std::exception& e) {
    return std::string("scenario ") + path + ": " + e.what();
  }
  if (cfg.label.empty() && root["name"]) cfg.label = scalar(root["name"]);
  return {};
}

}  // namespace meridian::loadtest
