#include "meridian/config/config.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <set>
#include <sstream>

#include "config/reader.hpp"
#include "config/sections.hpp"
#include "meridian/common/log.hpp"
#include "meridian/config/units.hpp"

namespace meridian::config {

std::string host_port::to_string() const {
  if (host.find(':') != std::string::npos) return common::cat('[', host, "]:", port);
  return common::cat(host, ':', port);
}

bool gateway_config::any_model_route() const {
  return std::any_of(routes.begin(), routes.end(),
                     [](const route_config& r) { return r.match.model.has_value(); });
}

std::string_view to_string(io_backend b) {
  switch (b) {
    case io_backend::auto_select:
      return "auto";
    case io_backend::io_uring:
      return "io_uring";
    case io_backend::epoll:
      return "epoll";
  }
  return "auto";
}
std::string_view to_string(balancer_kind b) {
  switch (b) {
    case balancer_kind::round_robin:
      return "round_robin";
    case balancer_kind::least_request:
      return "least_request";
    case balancer_kind::peak_ewma:
      return "peak_ewma";
    case balancer_kind::latency_aware:
      return "latency_aware";
    case balancer_kind::bandwidth_aware:
      return "bandwidth_aware";
  }
  return "least_request";
}
std::string_view to_string(cluster_kind k) {
  switch (k) {
    case cluster_kind::inference:
      return "inference";
    case cluster_kind::storage:
      return "storage";
    case cluster_kind::generic:
      return "generic";
    case cluster_kind::grpc_inference:
      return "grpc_inference";
  }
  return "generic";
}

namespace {

void read_limits(const reader& r, const YAML::Node& n, limits_config& out) {
  const std::string k = "limits";
  r.only_keys(
      n, k,
      {"max_header_bytes", "max_headers", "max_body_bytes", "max_connections_per_worker",
       "model_peek_bytes", "body_prebuffer_bytes", "min_data_rate", "max_concurrent_streams"});
  if (n["max_header_bytes"]) {
    out.max_header_bytes = r.size(n["max_header_bytes"], k + ".max_header_bytes");
    if (out.max_header_bytes < 1024 || out.max_header_bytes > 1024 * 1024)
      r.fail(n["max_header_bytes"], k + ".max_header_bytes", "must be between 1KiB and 1MiB");
  }
  if (n["max_headers"]) out.max_headers = r.count(n["max_headers"], k + ".max_headers", 1, 1000);
  if (n["max_body_bytes"]) out.max_body_bytes = r.size(n["max_body_bytes"], k + ".max_body_bytes");
  if (n["max_connections_per_worker"])
    out.max_connections_per_worker =
        r.count(n["max_connections_per_worker"], k + ".max_connections_per_worker", 1, 1000000);
  if (n["model_peek_bytes"]) {
    out.model_peek_bytes = r.size(n["model_peek_bytes"], k + ".model_peek_bytes");
    if (out.model_peek_bytes > 16 * 1024 * 1024)
      r.fail(n["model_peek_bytes"], k + ".model_peek_bytes", "must be at most 16MiB");
  }
  if (n["min_data_rate"]) {
    out.min_data_rate = r.size(n["min_data_rate"], k + ".min_data_rate");
    if (out.min_data_rate > 1024 * 1024 * 1024)
      r.fail(n["min_data_rate"], k + ".min_data_rate", "must be at most 1GiB (bytes per second)");
  }
  if (n["max_concurrent_streams"])
    out.max_concurrent_streams = static_cast<std::uint32_t>(
        r.count(n["max_concurrent_streams"], k + ".max_concurrent_streams", 1, 10000));
  if (n["body_prebuffer_bytes"]) {
    out.body_prebuffer_bytes = r.size(n["body_prebuffer_bytes"], k + ".body_prebuffer_bytes");
    if (out.body_prebuffer_bytes > 16 * 1024 * 1024)
      r.fail(n["body_prebuffer_bytes"], k + ".body_prebuffer_bytes", "must be at most 16MiB");
  }
}

void read_timeouts(const reader& r, const YAML::Node& n, timeouts_config& out) {
  const std::string k = "timeouts";
  r.only_keys(n, k,
              {"header", "body", "idle", "data_rate_window", "upstream_connect",
               "upstream_response", "upstream_idle"});
  auto one = [&](const char* name, duration& field) {
    if (!n[name]) return;
    field = r.dur(n[name], reader::join(k, name));
    if (field <= duration::zero()) r.fail(n[name], reader::join(k, name), "must be positive");
  };
  one("header", out.header);
  one("body", out.body);
  one("idle", out.idle);
  one("data_rate_window", out.data_rate_window);
  one("upstream_connect", out.upstream.connect);
  one("upstream_response", out.upstream.first_byte);
  one("upstream_idle", out.upstream.idle);
}

// gRPC backends are probed and asked for their models through their gRPC services: the probe
// calls KServe v2's ServerReady (or the standard grpc.health.v1 Check), discovery Triton's
// RepositoryIndex; their metrics are on a port of their own.
void read_grpc_services(const reader& r, const YAML::Node& n, const std::string& k,
                        cluster_config& c) {
  constexpr std::string_view ready = "/inference.GRPCInferenceService/ServerReady";
  constexpr std::string_view health = "/grpc.health.v1.Health/Check";
  if (c.kind != cluster_kind::grpc_inference) {
    if (auto p = n["models"]; p && p["names"])
      r.fail(p["names"], k + ".models.names",
             "only kind: grpc_inference clusters check listed models (ModelReady)");
    return;
  }
  if (auto p = n["probe"]) {
    if (!p["path"])
      c.probe.path = ready;
    else if (c.probe.path != ready && c.probe.path != health)
      r.fail(p["path"], k + ".probe.path",
             common::cat("a gRPC cluster's probe calls ", ready, " or ", health));
  }
  if (auto p = n["models"]; p && p.IsMap() && p["path"])
    r.fail(p["path"], k + ".models.path",
           "a gRPC cluster's models come from RepositoryIndex (else ModelReady for models.names)");
  c.models.path = "/inference.GRPCInferenceService/RepositoryIndex";
  if (auto p = n["load_metrics"]; p && c.load_metrics.port == 0)
    r.fail(p, k + ".load_metrics.port",
           "a gRPC backend serves its metrics on a port of its own (Triton: 8002): name it");
}

cluster_config read_cluster(const reader& r, const YAML::Node& n, const std::string& k,
                            const upstream_timeouts& timeouts) {
  r.only_keys(n, k,
              {"name", "kind", "balancer", "endpoints", "pool", "probe", "load_metrics", "models",
               "latency", "outlier", "prefix_affinity", "timeouts", "retries", "limits", "write_to",
               "stripe", "tls", "protocol"});
  cluster_config c;
  c.timeouts = timeouts;
  if (!n["name"]) r.fail(n, k + ".name", "missing (every cluster needs a name)");
  c.name = r.scalar(n["name"], k + ".name");
  if (c.name.empty()) r.fail(n["name"], k + ".name", "must not be empty");
  if (n["kind"]) {
    auto s = r.scalar(n["kind"], k + ".kind");
    if (s == "inference")
      c.kind = cluster_kind::inference;
    else if (s == "storage")
      c.kind = cluster_kind::storage;
    else if (s == "generic")
      c.kind = cluster_kind::generic;
    else if (s == "grpc_inference")
      c.kind = cluster_kind::grpc_inference;
    else
      r.fail(n["kind"], k + ".kind",
             common::cat("unknown kind '", s,
                         "' (expected inference, storage, generic or grpc_inference)"));
  }
  if (c.kind == cluster_kind::grpc_inference) {
    // What this version does for gRPC backends: h2c calls, routed by model and picked by
    // latency, health and models from their gRPC services, load from their metrics port. TLS to
    // them is not built yet, and prefix affinity, stripes and mirrors are HTTP features: those
    // keys are refused, not ignored.
    for (const char* key : {"prefix_affinity", "stripe", "write_to"})
      if (n[key])
        r.fail(n[key], reader::join(k, key),
               "not available for kind: grpc_inference in this version (h2c calls routed by "
               "model and latency)");
    // h2c, or h2 over TLS with the cluster's tls block (which alone implies it).
    if (auto p = n["protocol"]) {
      auto proto = r.scalar(p, k + ".protocol");
      if (proto != "h2c" && proto != "h2")
        r.fail(p, k + ".protocol", common::cat("unknown protocol '", proto, "' (h2c or h2)"));
      if (proto == "h2" && !n["tls"])
        r.fail(p, k + ".protocol", "h2 is HTTP/2 over TLS: the cluster needs a tls block");
      if (proto == "h2c" && n["tls"])
        r.fail(p, k + ".protocol", "h2c is HTTP/2 without TLS, but the cluster has a tls block");
    }
  } else if (auto p = n["protocol"]) {
    r.fail(p, k + ".protocol", "only kind: grpc_inference clusters take a protocol (h2c or h2)");
  }
  // Model servers get the latency-aware picker unless told otherwise.
  if (c.kind == cluster_kind::inference || c.kind == cluster_kind::grpc_inference)
    c.balancer = balancer_kind::latency_aware;
  // Object stores get the bandwidth-aware picker: time to the last byte, not the first.
  if (c.kind == cluster_kind::storage) c.balancer = balancer_kind::bandwidth_aware;
  read_balancer(r, n, k, c);
  auto eps = n["endpoints"];
  if (!eps || !eps.IsSequence() || eps.size() == 0)
    r.fail(eps ? eps : n, k + ".endpoints", "expected a non-empty list of endpoints");
  std::set<std::string> seen;
  for (std::size_t i = 0; i < eps.size(); ++i) {
    auto ek = common::cat(k, ".endpoints[", i, ']');
    auto e = eps[i];
    endpoint_config ec;
    if (e.IsScalar()) {
      ec.address = r.address(e, ek);
    } else {
      r.only_keys(e, ek, {"address", "zone"});
      if (!e["address"]) r.fail(e, ek + ".address", "missing");
      ec.address = r.address(e["address"], ek + ".address");
      if (e["zone"]) ec.zone = r.scalar(e["zone"], ek + ".zone");
    }
    if (ec.address.port == 0) r.fail(e, ek, "endpoint port must not be 0");
    if (!seen.insert(ec.address.to_string()).second)
      r.fail(e, ek, common::cat("duplicate endpoint ", ec.address.to_string()));
    c.endpoints.push_back(std::move(ec));
  }
  if (auto p = n["pool"]) {
    auto pk = k + ".pool";
    r.only_keys(p, pk, {"max_idle_per_endpoint", "max_connections_per_endpoint", "idle_timeout"});
    if (p["max_idle_per_endpoint"])
      c.pool.max_idle_per_endpoint =
          r.count(p["max_idle_per_endpoint"], pk + ".max_idle_per_endpoint", 0, 100000);
    if (p["max_connections_per_endpoint"])
      c.pool.max_connections_per_endpoint = r.count(
          p["max_connections_per_endpoint"], pk + ".max_connections_per_endpoint", 1, 1000000);
    if (p["idle_timeout"]) c.pool.idle_timeout = r.dur(p["idle_timeout"], pk + ".idle_timeout");
  }
  c.models.enabled = c.kind == cluster_kind::inference || c.kind == cluster_kind::grpc_inference;
  if (auto p = n["probe"]) read_probe(r, p, k + ".probe", c.probe);
  if (auto p = n["load_metrics"]) read_load_metrics(r, p, k + ".load_metrics", c.load_metrics);
  if (auto p = n["models"]) read_models(r, p, k + ".models", c.models);
  read_grpc_services(r, n, k, c);
  if (auto p = n["latency"]) read_latency(r, p, k + ".latency", c.latency);
  if (auto p = n["outlier"]) read_outlier(r, p, k + ".outlier", c.outlier);
  // On by default where it is a term of the cost (measured to cost nothing on loads without
  // shared prefixes: loadtest/RESULTS.md); `prefix_affinity: false` turns it off.
  c.prefix_affinity.enabled =
      c.kind == cluster_kind::inference && c.balancer == balancer_kind::latency_aware;
  if (auto p = n["prefix_affinity"]) {
    read_prefix_affinity(r, p, k + ".prefix_affinity", c.prefix_affinity);
    if (c.prefix_affinity.enabled &&
        (c.kind != cluster_kind::inference || c.balancer != balancer_kind::latency_aware))
      r.fail(p, k + ".prefix_affinity",
             "needs kind: inference and balancer: latency_aware (it is a term of that cost)");
  }
  if (auto p = n["stripe"]) {
    read_stripe(r, p, k + ".stripe", c.stripe);
    if (c.stripe.enabled && c.kind != cluster_kind::storage)
      r.fail(p, k + ".stripe", "stripes object GETs: the cluster must be kind: storage");
  }
  if (auto p = n["timeouts"]) read_upstream_timeouts(r, p, k + ".timeouts", c.timeouts);
  if (auto p = n["retries"])
    read_retries(r, p, k + ".retries", c.retries, false, c.kind == cluster_kind::grpc_inference);
  if (auto p = n["limits"]) read_cluster_limits(r, p, k + ".limits", c.limits);
  if (auto p = n["tls"]) {
    c.tls = read_upstream_tls(r, p, k + ".tls");
    c.tls->h2 = c.kind == cluster_kind::grpc_inference;
  }
  return c;
}

std::string read_token(const reader& r, const YAML::Node& n, const std::string& path) {
  std::ifstream f(path);
  if (!f) r.fail(n, "admin.token_file", common::cat("cannot read '", path, "'"));
  std::string token((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' '))
    token.pop_back();
  if (token.size() < 16)
    r.fail(n, "admin.token_file",
           common::cat("'", path, "' holds no token of 16 characters or more"));
  for (char c : token)
    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f)
      r.fail(n, "admin.token_file", common::cat("'", path, "' must hold one line without spaces"));
  return token;
}

gateway_config read_root(const reader& r, const YAML::Node& root) {
  gateway_config cfg;
  cfg.source = r.source();
  if (!root.IsMap()) r.fail(root, "", "the config must be a mapping");
  // Each part is read on its own, so one run of --check names every part that is wrong (the
  // first mistake of each), not only the first.
  std::vector<std::string> errors;
  auto part = [&](auto&& read) {
    try {
      read();
    } catch (const config_error& e) {
      errors.emplace_back(e.what());
    }
  };
  part([&] {
    r.only_keys(root, "",
                {"listeners", "admin", "workers", "io_backend", "zone", "clusters", "routes",
                 "limits", "timeouts", "drain", "dns", "tenants", "access_log"});
  });
  part([&] { cfg.listeners = read_listeners(r, root); });
  part([&] {
    auto a = root["admin"];
    if (!a) return;
    r.only_keys(a, "admin", {"address", "token_file"});
    if (a["address"]) cfg.admin.address = r.address(a["address"], "admin.address");
    if (a["token_file"]) {
      cfg.admin.token_file = r.scalar(a["token_file"], "admin.token_file");
      cfg.admin.token = read_token(r, a["token_file"], cfg.admin.token_file);
    }
    // Both would bind with SO_REUSEPORT and split connections between them silently.
    for (const auto& l : cfg.listeners)
      if (listeners_overlap(l.address, cfg.admin.address))
        r.fail(
            a["address"] ? a["address"] : a, "admin.address",
            common::cat(cfg.admin.address.to_string(), " is where listener '", l.name, "' binds (",
                        l.address.to_string(), "): the admin port must be a port of its own"));
  });
  part([&] {
    auto w = root["workers"];
    if (!w) return;
    if (r.scalar(w, "workers") == "auto")
      cfg.workers = 0;
    else
      cfg.workers = static_cast<unsigned>(r.count(w, "workers", 1, 256));
  });
  part([&] {
    auto io = root["io_backend"];
    if (!io) return;
    auto s = r.scalar(io, "io_backend");
    if (s == "auto")
      cfg.io = io_backend::auto_select;
    else if (s == "io_uring")
      cfg.io = io_backend::io_uring;
    else if (s == "epoll")
      cfg.io = io_backend::epoll;
    else
      r.fail(io, "io_backend",
             common::cat("unknown backend '", s, "' (expected auto, io_uring or epoll)"));
  });
  part([&] {
    if (auto z = root["zone"]) cfg.zone = r.scalar(z, "zone");
  });
  // Before the clusters: its upstream keys are where every cluster's timeouts start.
  part([&] {
    if (auto t = root["timeouts"]) read_timeouts(r, t, cfg.timeouts);
  });
  auto cs = root["clusters"];
  bool clusters_whole = true;
  part([&] {
    if (!cs || !cs.IsSequence() || cs.size() == 0)
      r.fail(cs ? cs : root, "clusters", "expected a non-empty list of clusters");
  });
  for (std::size_t i = 0; cs && cs.IsSequence() && i < cs.size(); ++i) {
    auto before = errors.size();
    part([&] {
      auto c = read_cluster(r, cs[i], common::cat("clusters[", i, ']'), cfg.timeouts.upstream);
      for (const auto& other : cfg.clusters)
        if (other.name == c.name)
          r.fail(cs[i]["name"], common::cat("clusters[", i, "].name"),
                 common::cat("duplicate cluster name '", c.name, "'"));
      cfg.clusters.push_back(std::move(c));
    });
    clusters_whole = clusters_whole && errors.size() == before;
  }
  // Routes name clusters: with one of them wrong, a route naming it would only echo that.
  if (clusters_whole) {
    auto rs = root["routes"];
    part([&] {
      if (!rs || !rs.IsSequence() || rs.size() == 0)
        r.fail(rs ? rs : root, "routes", "expected a non-empty list of routes");
    });
    for (std::size_t i = 0; rs && rs.IsSequence() && i < rs.size(); ++i)
      part([&] {
        cfg.routes.push_back(read_route(r, rs[i], common::cat("routes[", i, ']'), cfg.clusters));
      });
  }
  part([&] {
    if (auto l = root["limits"]) read_limits(r, l, cfg.limits);
  });
  part([&] {
    if (auto d = root["drain"]) read_drain(r, d, cfg.drain);
  });
  part([&] {
    if (auto d = root["dns"]) read_dns(r, d, cfg.dns);
  });
  part([&] {
    if (auto t = root["tenants"]) read_tenants(r, t, cfg.tenants);
  });
  part([&] {
    auto a = root["access_log"];
    if (!a) return;
    if (a.IsMap()) {
      r.only_keys(a, "access_log", {"enabled"});
      if (a["enabled"]) cfg.access_log = r.boolean(a["enabled"], "access_log.enabled");
    } else {
      cfg.access_log = r.boolean(a, "access_log");
    }
  });
  if (!errors.empty()) {
    std::string all = errors[0];
    for (std::size_t i = 1; i < errors.size(); ++i) all += "\n" + errors[i];
    throw config_error(all);
  }
  return cfg;
}

// "clusters[0].balancer" -> navigates (creating maps as needed) and assigns the parsed value.
void apply_override(YAML::Node root, const std::string& spec) {
  auto eq = spec.find('=');
  if (eq == std::string::npos || eq == 0)
    throw config_error(common::cat("--set ", spec, ": expected key.path=value"));
  std::string path = spec.substr(0, eq);
  YAML::Node value;
  try {
    value = YAML::Load(spec.substr(eq + 1));
  } catch (const YAML::Exception& e) {
    throw config_error(common::cat("--set ", spec, ": value is not valid YAML: ", e.msg));
  }
  // yaml-cpp's operator[] returns handles that alias the tree, so we walk with reset().
  YAML::Node cur = root;
  std::size_t pos = 0;
  while (pos < path.size()) {
    std::size_t end = path.find_first_of(".[", pos);
    std::string key = path.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
    YAML::Node next;
    if (!key.empty()) {
      next.reset(cur[key]);
      pos = end == std::string::npos ? path.size() : end;
    } else if (path[pos] == '[') {
      auto close = path.find(']', pos);
      if (close == std::string::npos)
        throw config_error(common::cat("--set ", spec, ": missing ]"));
      std::size_t idx = 0;
      auto num = path.substr(pos + 1, close - pos - 1);
      auto res = std::from_chars(num.data(), num.data() + num.size(), idx);
      if (res.ec != std::errc{} || !cur.IsSequence() || idx >= cur.size())
        throw config_error(common::cat("--set ", spec, ": no element [", num, "]"));
      next.reset(cur[idx]);
      pos = close + 1;
    } else {  // '.'
      ++pos;
      continue;
    }
    if (pos >= path.size()) {
      if (!key.empty())
        cur[key] = value;
      else
        next = value;
      return;
    }
    cur.reset(next);
  }
}

std::shared_ptr<const gateway_config> load_node(YAML::Node root, const std::string& source,
                                                const std::vector<std::string>& overrides) {
  for (const auto& o : overrides) apply_override(root, o);
  reader r(source);
  auto cfg = read_root(r, root);
  cfg.effective_yaml = redacted_yaml(root);
  return std::make_shared<const gateway_config>(std::move(cfg));
}

}  // namespace

std::shared_ptr<const gateway_config> load_string(const std::string& yaml,
                                                  const std::string& source_name,
                                                  const std::vector<std::string>& overrides) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::ParserException& e) {
    throw config_error(common::cat(source_name, ':', e.mark.line + 1, ':', e.mark.column + 1,
                                   ": YAML syntax error: ", e.msg));
  }
  return load_node(root, source_name, overrides);
}

std::shared_ptr<const gateway_config> load_file(const std::string& path,
                                                const std::vector<std::string>& overrides) {
  std::ifstream in(path);
  if (!in) throw config_error(common::cat(path, ": cannot open the config file"));
  std::stringstream ss;
  ss << in.rdbuf();
  return load_string(ss.str(), path, overrides);
}

}  // namespace meridian::config
