// The `tenants:` section and the keys file it names (tenants, their key hashes, models, priority
// and limits). Load time only.
#include <yaml-cpp/yaml.h>

#include <fstream>
#include <iterator>
#include <set>

#include "config/reader.hpp"
#include "config/sections.hpp"

namespace meridian::config {

namespace {

std::optional<key_digest> parse_key_hash(std::string_view s) {
  constexpr std::string_view prefix = "sha256:";
  if (!s.starts_with(prefix) || s.size() != prefix.size() + 64) return std::nullopt;
  s.remove_prefix(prefix.size());
  key_digest d{};
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (std::size_t i = 0; i < 32; ++i) {
    int hi = nibble(s[2 * i]), lo = nibble(s[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    d[i] = static_cast<unsigned char>(hi << 4 | lo);
  }
  return d;
}

// "tokens_per_minute" and the like; nullopt for any other name.
std::optional<tenant_limit> limit_named(const std::string& name) {
  static const std::pair<std::string_view, limit_counts> what[] = {
      {"requests", limit_counts::requests},
      {"tokens", limit_counts::tokens},
      {"prompt_tokens", limit_counts::prompt_tokens},
      {"completion_tokens", limit_counts::completion_tokens}};
  static const std::pair<std::string_view, duration> per[] = {
      {"_per_minute", std::chrono::minutes(1)}, {"_per_day", std::chrono::hours(24)}};
  for (auto [w, counts] : what)
    for (auto [suffix, window] : per)
      if (name == common::cat(w, suffix)) {
        tenant_limit l;
        l.name = name;
        l.what = counts;
        l.window = window;
        return l;
      }
  return std::nullopt;
}

void read_limits(const reader& r, const YAML::Node& n, const std::string& key, tenant_config& t) {
  if (!n.IsMap()) r.fail(n, key, "expected a mapping of limits");
  std::set<std::string> seen;
  for (const auto& kv : n) {
    auto name = kv.first.as<std::string>();
    auto k = reader::join(key, name);
    if (!seen.insert(name).second) r.fail(kv.first, k, "duplicate key");
    if (name == "concurrent") {
      t.concurrent = static_cast<unsigned>(r.count(kv.second, k, 1, 1'000'000));
      continue;
    }
    auto l = limit_named(name);
    if (!l)
      r.fail(kv.first, k,
             "unknown limit (expected requests_, tokens_, prompt_tokens_ or completion_tokens_ "
             "with _per_minute or _per_day, or concurrent)");
    l->amount = static_cast<double>(r.count(kv.second, k, 1, 1'000'000'000'000ull));
    t.limits.push_back(std::move(*l));
  }
}

tenant_config read_tenant(const reader& r, const YAML::Node& n, const std::string& key) {
  r.only_keys(n, key, {"name", "keys", "subjects", "models", "priority", "limits"});
  tenant_config t;
  if (!n["name"]) r.fail(n, key, "a tenant needs a name");
  t.name = r.scalar(n["name"], reader::join(key, "name"));
  if (t.name.empty() || t.name.size() > 64 ||
      t.name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") !=
          std::string::npos)
    r.fail(n["name"], reader::join(key, "name"),
           "write 1 to 64 letters, digits, '-', '_' or '.' (it is a metrics label)");
  // "anonymous" is who calls without a key where tenants.require is false: it has no keys.
  auto keys = n["keys"];
  auto subjects = n["subjects"];
  if (subjects) {
    if (!subjects.IsSequence() || subjects.size() == 0)
      r.fail(subjects, reader::join(key, "subjects"),
             "expected a list of client certificate subjects (RFC 2253, e.g. \"CN=svc-a,O=Example\")");
    for (std::size_t i = 0; i < subjects.size(); ++i) {
      auto s = r.scalar(subjects[i], common::cat(key, ".subjects[", i, ']'));
      if (s.empty()) r.fail(subjects[i], common::cat(key, ".subjects[", i, ']'), "empty subject");
      t.subjects.push_back(std::move(s));
    }
  }
  if (t.name == "anonymous") {
    if (keys || subjects)
      r.fail(keys ? keys : subjects, reader::join(key, keys ? "keys" : "subjects"),
             "the tenant 'anonymous' is who calls without a key: it has none");
  } else if (keys ? (!keys.IsSequence() || keys.size() == 0) : !subjects) {
    r.fail(keys ? keys : n, reader::join(key, "keys"),
           "expected a non-empty list of \"sha256:<hex>\" key hashes (meridian --hash-key "
           "prints one), or client certificate subjects");
  }
  for (std::size_t i = 0; keys && i < keys.size(); ++i) {
    auto k = common::cat(key, ".keys[", i, ']');
    auto d = parse_key_hash(r.scalar(keys[i], k));
    // The message never repeats the value: it may be a key pasted in clear.
    if (!d)
      r.fail(keys[i], k,
             "not a key hash: write \"sha256:\" and 64 hex digits (meridian --hash-key prints "
             "one); keys are never stored in clear");
    t.keys.push_back(*d);
  }
  if (auto m = n["models"]) {
    if (!m.IsSequence()) r.fail(m, reader::join(key, "models"), "expected a list of model patterns");
    for (std::size_t i = 0; i < m.size(); ++i) {
      auto p = r.scalar(m[i], common::cat(key, ".models[", i, ']'));
      if (p.empty()) r.fail(m[i], common::cat(key, ".models[", i, ']'), "empty pattern");
      t.models.push_back(std::move(p));
    }
  }
  if (auto p = n["priority"]) {
    auto s = r.scalar(p, reader::join(key, "priority"));
    if (s == "critical")
      t.priority = request_priority::critical;
    else if (s == "standard")
      t.priority = request_priority::standard;
    else if (s == "sheddable")
      t.priority = request_priority::sheddable;
    else
      r.fail(p, reader::join(key, "priority"),
             common::cat("unknown priority '", s, "' (expected critical, standard or sheddable)"));
  }
  if (auto l = n["limits"]) read_limits(r, l, reader::join(key, "limits"), t);
  return t;
}

}  // namespace

std::vector<tenant_config> parse_keys(const std::string& yaml, const std::string& source) {
  reader r(source);
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    throw config_error(common::cat(source, ':', e.mark.line + 1, ':', e.mark.column + 1, ": ",
                                   e.msg));
  }
  r.only_keys(root, "", {"tenants"});
  auto list = root["tenants"];
  if (!list.IsSequence()) r.fail(list, "tenants", "expected a list of tenants");
  std::vector<tenant_config> out;
  std::set<std::string> names;
  std::set<key_digest> keys;
  std::set<std::string> subjects;
  for (std::size_t i = 0; i < list.size(); ++i) {
    auto key = common::cat("tenants[", i, ']');
    auto t = read_tenant(r, list[i], key);
    for (std::size_t k = 0; k < t.subjects.size(); ++k)
      if (!subjects.insert(t.subjects[k]).second)
        r.fail(list[i]["subjects"][k], common::cat(key, ".subjects[", k, ']'),
               "this subject is listed twice (a certificate names one tenant)");
    if (!names.insert(t.name).second)
      r.fail(list[i]["name"], key + ".name", common::cat("duplicate tenant '", t.name, "'"));
    for (std::size_t k = 0; k < t.keys.size(); ++k)
      if (!keys.insert(t.keys[k]).second)
        r.fail(list[i]["keys"][k], common::cat(key, ".keys[", k, ']'),
               "this key hash is listed twice (a key names one tenant)");
    out.push_back(std::move(t));
  }
  return out;
}

std::vector<tenant_config> load_keys_file(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw config_error(common::cat(path, ": cannot read the keys file"));
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return parse_keys(text, path);
}

void read_tenants(const reader& r, const YAML::Node& n, tenants_config& out) {
  r.only_keys(n, "tenants", {"keys_file", "header", "require", "hide_models",
                             "default_max_tokens", "redis"});
  out.enabled = true;
  if (auto rs = n["redis"]) {
    r.only_keys(rs, "tenants.redis", {"address", "prefix", "sync_interval"});
    tenants_config::redis_store store;
    if (!rs["address"]) r.fail(rs, "tenants.redis.address", "required (host:port of the Redis server)");
    store.address = r.address(rs["address"], "tenants.redis.address");
    if (rs["prefix"]) store.prefix = r.scalar(rs["prefix"], "tenants.redis.prefix");
    if (rs["sync_interval"]) {
      store.sync_interval = r.dur(rs["sync_interval"], "tenants.redis.sync_interval");
      if (store.sync_interval < std::chrono::milliseconds(10) ||
          store.sync_interval > std::chrono::seconds(5))
        r.fail(rs["sync_interval"], "tenants.redis.sync_interval", "must be between 10ms and 5s");
    }
    out.redis = std::move(store);
  }
  if (!n["keys_file"]) r.fail(n, "tenants.keys_file", "the keys file is required");
  out.keys_file = r.scalar(n["keys_file"], "tenants.keys_file");
  try {
    load_keys_file(out.keys_file);  // checked now: --check and reloads refuse a broken file
  } catch (const config_error& e) {
    r.fail(n["keys_file"], "tenants.keys_file", e.what());
  }
  if (n["header"]) {
    out.header = lower(r.scalar(n["header"], "tenants.header"));
    if (out.header.empty() || out.header.find_first_of(" \t:") != std::string::npos)
      r.fail(n["header"], "tenants.header", "expected a header name");
  }
  if (n["require"]) out.require = r.boolean(n["require"], "tenants.require");
  if (n["hide_models"]) out.hide_models = r.boolean(n["hide_models"], "tenants.hide_models");
  if (n["default_max_tokens"])
    out.default_max_tokens = r.count(n["default_max_tokens"], "tenants.default_max_tokens", 1,
                                     10'000'000);
}

}  // namespace meridian::config
