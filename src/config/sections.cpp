#include "config/sections.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>

namespace meridian::config {

namespace {
std::string path_of(const reader& r, const YAML::Node& n, const std::string& k) {
  auto p = r.scalar(n, k);
  if (p.empty() || p.front() != '/') r.fail(n, k, "must start with /");
  for (char c : p)
    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f)
      r.fail(n, k, "must not contain spaces or control characters");
  return p;
}

duration positive(const reader& r, const YAML::Node& n, const std::string& k) {
  auto d = r.dur(n, k);
  if (d <= duration::zero()) r.fail(n, k, "must be positive");
  return d;
}

double ratio(const reader& r, const YAML::Node& n, const std::string& k, double lo, double hi) {
  auto s = r.scalar(n, k);
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size() || !std::isfinite(v))
    r.fail(n, k, common::cat("expected a number, got '", s, "'"));
  if (v < lo || v > hi) r.fail(n, k, common::cat("must be between ", lo, " and ", hi));
  return v;
}

// An interval and a timeout shorter than it: a probe still running when the next is due
// would measure the gateway's own backlog.
void interval_and_timeout(const reader& r, const YAML::Node& n, const std::string& k,
                          duration& interval, duration& timeout) {
  if (n["interval"]) interval = positive(r, n["interval"], k + ".interval");
  if (n["timeout"]) timeout = positive(r, n["timeout"], k + ".timeout");
  if (interval < std::chrono::milliseconds(10))
    r.fail(n["interval"] ? n["interval"] : n, k + ".interval", "must be at least 10ms");
  // Only an interval given: the default timeout shrinks to fit it.
  if (!n["timeout"] && timeout > interval) timeout = interval;
  if (timeout > interval)
    r.fail(n["timeout"] ? n["timeout"] : n, k + ".timeout", "must not be longer than the interval");
}

std::vector<std::string> names(const reader& r, const YAML::Node& n, const std::string& k) {
  std::vector<std::string> out;
  if (n.IsScalar()) {
    out.push_back(r.scalar(n, k));
  } else if (n.IsSequence() && n.size() > 0) {
    for (std::size_t i = 0; i < n.size(); ++i)
      out.push_back(r.scalar(n[i], common::cat(k, '[', i, ']')));
  } else {
    r.fail(n, k, "expected a metric name or a non-empty list of them");
  }
  for (const auto& s : out) {
    bool ok = !s.empty() && !(s[0] >= '0' && s[0] <= '9');
    for (char c : s)
      ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == ':');
    if (!ok) r.fail(n, k, common::cat("'", s, "' is not a Prometheus metric name"));
  }
  return out;
}
}  // namespace

void read_probe(const reader& r, const YAML::Node& n, const std::string& k, probe_config& out) {
  r.only_keys(n, k, {"path", "interval", "timeout", "rise", "fall"});
  out.enabled = true;
  if (n["path"]) out.path = path_of(r, n["path"], k + ".path");
  interval_and_timeout(r, n, k, out.interval, out.timeout);
  if (n["rise"]) out.rise = static_cast<unsigned>(r.count(n["rise"], k + ".rise", 1, 100));
  if (n["fall"]) out.fall = static_cast<unsigned>(r.count(n["fall"], k + ".fall", 1, 100));
}

void read_load_metrics(const reader& r, const YAML::Node& n, const std::string& k,
                       load_metrics_config& out) {
  r.only_keys(n, k, {"path", "port", "interval", "timeout", "stale_after", "names"});
  out.enabled = true;
  if (n["path"]) out.path = path_of(r, n["path"], k + ".path");
  if (n["port"]) out.port = static_cast<std::uint16_t>(r.count(n["port"], k + ".port", 1, 65535));
  interval_and_timeout(r, n, k, out.interval, out.timeout);
  if (n["stale_after"]) out.stale_after = positive(r, n["stale_after"], k + ".stale_after");
  if (auto m = n["names"]) {
    auto mk = k + ".names";
    r.only_keys(m, mk, {"waiting", "running", "kv_cache_usage"});
    if (m["waiting"]) out.waiting = names(r, m["waiting"], mk + ".waiting");
    if (m["running"]) out.running = names(r, m["running"], mk + ".running");
    if (m["kv_cache_usage"])
      out.kv_cache_usage = names(r, m["kv_cache_usage"], mk + ".kv_cache_usage");
  }
}

void read_models(const reader& r, const YAML::Node& n, const std::string& k, models_config& out) {
  if (n.IsScalar()) {
    out.enabled = r.boolean(n, k);
    return;
  }
  r.only_keys(n, k, {"enabled", "path", "interval", "timeout", "names"});
  out.enabled = n["enabled"] ? r.boolean(n["enabled"], k + ".enabled") : true;
  if (n["path"]) out.path = path_of(r, n["path"], k + ".path");
  interval_and_timeout(r, n, k, out.interval, out.timeout);
  if (auto m = n["names"]) {
    if (!m.IsSequence() || m.size() == 0)
      r.fail(m, k + ".names", "expected a non-empty list of model names");
    for (std::size_t i = 0; i < m.size(); ++i) {
      auto name = r.scalar(m[i], common::cat(k, ".names[", i, ']'));
      if (name.empty()) r.fail(m[i], common::cat(k, ".names[", i, ']'), "must not be empty");
      out.names.push_back(std::move(name));
    }
  }
}

void read_latency(const reader& r, const YAML::Node& n, const std::string& k, latency_config& out) {
  r.only_keys(n, k, {"decay", "zone_margin", "kv_threshold", "capacity", "cold_latency"});
  if (n["decay"]) out.decay = positive(r, n["decay"], k + ".decay");
  if (n["zone_margin"]) {
    out.zone_margin = r.dur(n["zone_margin"], k + ".zone_margin");
    if (out.zone_margin < duration::zero())
      r.fail(n["zone_margin"], k + ".zone_margin", "must not be negative");
  }
  if (n["kv_threshold"])
    out.kv_threshold = ratio(r, n["kv_threshold"], k + ".kv_threshold", 0, 0.99);
  if (n["capacity"])
    out.capacity = static_cast<unsigned>(r.count(n["capacity"], k + ".capacity", 1, 100000));
  if (n["cold_latency"]) out.cold_latency = positive(r, n["cold_latency"], k + ".cold_latency");
}

void read_prefix_affinity(const reader& r, const YAML::Node& n, const std::string& k,
                          prefix_affinity_config& out) {
  if (n.IsScalar()) {
    out.enabled = r.boolean(n, k);
    return;
  }
  r.only_keys(
      n, k,
      {"enabled", "block_bytes", "capacity", "load_factor", "session_header", "prefill_per_block"});
  out.enabled = n["enabled"] ? r.boolean(n["enabled"], k + ".enabled") : true;
  if (n["block_bytes"]) {
    out.block_bytes = r.size(n["block_bytes"], k + ".block_bytes");
    if (out.block_bytes < 16 || out.block_bytes > 4096)
      r.fail(n["block_bytes"], k + ".block_bytes", "must be between 16 and 4096 bytes");
  }
  if (n["capacity"]) out.capacity = r.count(n["capacity"], k + ".capacity", 1, 16 * 1024 * 1024);
  if (n["load_factor"]) {
    out.load_factor = ratio(r, n["load_factor"], k + ".load_factor", 1, 100);
  }
  if (n["session_header"]) {
    auto h = r.scalar(n["session_header"], k + ".session_header");
    bool ok = !h.empty();
    for (char& c : h) {
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_');
    }
    if (!ok)
      r.fail(n["session_header"], k + ".session_header",
             common::cat("'", h, "' is not a header name (letters, digits, '-', '_')"));
    out.session_header = h;
  }
  if (n["prefill_per_block"])
    out.prefill_per_block = positive(r, n["prefill_per_block"], k + ".prefill_per_block");
}

void read_outlier(const reader& r, const YAML::Node& n, const std::string& k, outlier_config& out) {
  r.only_keys(n, k,
              {"consecutive_5xx", "consecutive_connect_failures", "consecutive_hedge_losses",
               "base_ejection", "max_ejection", "max_ejected_share"});
  if (n["consecutive_5xx"])
    out.consecutive_5xx =
        static_cast<unsigned>(r.count(n["consecutive_5xx"], k + ".consecutive_5xx", 0, 1000));
  if (n["consecutive_connect_failures"])
    out.consecutive_connect_failures = static_cast<unsigned>(
        r.count(n["consecutive_connect_failures"], k + ".consecutive_connect_failures", 0, 1000));
  if (n["consecutive_hedge_losses"])
    out.consecutive_hedge_losses = static_cast<unsigned>(
        r.count(n["consecutive_hedge_losses"], k + ".consecutive_hedge_losses", 0, 1000));
  if (n["base_ejection"]) out.base_ejection = positive(r, n["base_ejection"], k + ".base_ejection");
  if (n["max_ejection"]) out.max_ejection = positive(r, n["max_ejection"], k + ".max_ejection");
  if (out.max_ejection < out.base_ejection)
    r.fail(n["max_ejection"] ? n["max_ejection"] : n, k + ".max_ejection",
           "must not be shorter than base_ejection");
  if (n["max_ejected_share"])
    out.max_ejected_share = ratio(r, n["max_ejected_share"], k + ".max_ejected_share", 0, 1);
}

void read_upstream_timeouts(const reader& r, const YAML::Node& n, const std::string& k,
                            upstream_timeouts& out) {
  r.only_keys(n, k, {"connect", "first_byte", "idle", "total"});
  if (n["connect"]) out.connect = positive(r, n["connect"], k + ".connect");
  if (n["first_byte"]) out.first_byte = positive(r, n["first_byte"], k + ".first_byte");
  if (n["idle"]) out.idle = positive(r, n["idle"], k + ".idle");
  if (n["total"]) {
    auto s = r.scalar(n["total"], k + ".total");
    out.total = s == "none" ? duration::zero() : positive(r, n["total"], k + ".total");
  }
}

void read_retries(const reader& r, const YAML::Node& n, const std::string& k, retry_config& out,
                  bool route, bool grpc) {
  if (route)
    r.only_keys(n, k, {"attempts", "on"});  // the budget is the cluster's
  else
    r.only_keys(n, k, {"attempts", "budget", "on"});
  if (n["attempts"])
    out.attempts = static_cast<unsigned>(r.count(n["attempts"], k + ".attempts", 1, 10));
  if (auto b = n["budget"]) {
    auto bk = k + ".budget";
    r.only_keys(b, bk, {"ratio", "min_per_second"});
    if (b["ratio"]) out.budget_ratio = ratio(r, b["ratio"], bk + ".ratio", 0, 10);
    if (b["min_per_second"])
      out.budget_min_per_second = ratio(r, b["min_per_second"], bk + ".min_per_second", 0, 1e6);
  }
  if (auto on = n["on"]) {
    auto ok = k + ".on";
    if (!on.IsSequence()) r.fail(on, ok, "expected a list (e.g. [connect_failure, 503])");
    out.on = 0;
    out.grpc_codes = 0;
    // gRPC statuses by Envoy's names (retry_on for gRPC), with their codes.
    static constexpr std::pair<std::string_view, int> grpc_names[] = {{"cancelled", 1},
                                                                      {"deadline-exceeded", 4},
                                                                      {"resource-exhausted", 8},
                                                                      {"internal", 13},
                                                                      {"unavailable", 14}};
    for (std::size_t i = 0; i < on.size(); ++i) {
      auto ik = common::cat(ok, '[', i, ']');
      auto s = r.scalar(on[i], ik);
      auto g = std::find_if(std::begin(grpc_names), std::end(grpc_names),
                            [&](const auto& e) { return e.first == s; });
      if (s == "connect_failure") {
        out.on |= retry_connect_failure;
      } else if (s == "reset_before_request") {
        out.on |= retry_reset_before_request;
      } else if (s == "reset_before_response") {
        out.on |= retry_reset_before_response;
      } else if (s == "503" && !grpc) {
        out.on |= retry_status_503;
      } else if (g != std::end(grpc_names) && grpc) {
        out.on |= retry_grpc_status;
        out.grpc_codes |= 1u << g->second;
      } else if (s == "503" || g != std::end(grpc_names)) {
        r.fail(on[i], ik,
               grpc ? "a gRPC answer carries grpc-status: retry on unavailable, not 503"
                    : common::cat("'", s, "' is a gRPC status: for kind: grpc_inference clusters"));
      } else {
        r.fail(on[i], ik,
               common::cat("unknown condition '", s,
                           grpc ? "' (expected connect_failure, reset_before_request, "
                                  "reset_before_response, cancelled, deadline-exceeded, internal, "
                                  "resource-exhausted or unavailable)"
                                : "' (expected connect_failure, reset_before_request, "
                                  "reset_before_response or 503)"));
      }
    }
  }
}

// `balancer` and `write_to`, over the defaults the cluster's kind gave.
void read_balancer(const reader& r, const YAML::Node& n, const std::string& k, cluster_config& c) {
  if (n["balancer"]) {
    auto s = r.scalar(n["balancer"], k + ".balancer");
    if (s == "round_robin")
      c.balancer = balancer_kind::round_robin;
    else if (s == "least_request")
      c.balancer = balancer_kind::least_request;
    else if (s == "peak_ewma")
      c.balancer = balancer_kind::peak_ewma;
    else if (s == "latency_aware")
      c.balancer = balancer_kind::latency_aware;
    else if (s == "bandwidth_aware")
      c.balancer = balancer_kind::bandwidth_aware;
    else if (s == "consistent_hash")
      r.fail(n["balancer"], k + ".balancer",
             common::cat("balancer '", s,
                         "' is not available in this version (use latency_aware, "
                         "bandwidth_aware, peak_ewma, least_request or round_robin)"));
    else
      r.fail(n["balancer"], k + ".balancer",
             common::cat("unknown balancer '", s,
                         "' (expected latency_aware, bandwidth_aware, peak_ewma, least_request or "
                         "round_robin)"));
    if (c.balancer == balancer_kind::bandwidth_aware && c.kind != cluster_kind::storage)
      r.fail(n["balancer"], k + ".balancer",
             "bandwidth_aware weighs object transfers: the cluster must be kind: storage");
  }
  if (n["write_to"]) {
    auto s = r.scalar(n["write_to"], k + ".write_to");
    if (s == "first_healthy")
      c.write_to = write_target::first_healthy;
    else if (s == "zone_local")
      c.write_to = write_target::zone_local;
    else
      r.fail(n["write_to"], k + ".write_to",
             common::cat("unknown value '", s, "' (expected first_healthy or zone_local)"));
    if (c.balancer != balancer_kind::bandwidth_aware)
      r.fail(n["write_to"], k + ".write_to",
             "is read by the bandwidth_aware balancer (kind: storage) only");
  }
}

void read_stripe(const reader& r, const YAML::Node& n, const std::string& k, stripe_config& out) {
  out.enabled = true;
  if (n.IsScalar()) {
    out.enabled = r.boolean(n, k);
    return;
  }
  r.only_keys(n, k, {"min_size", "part_size", "max_parallel"});
  if (n["min_size"]) out.min_size = r.size(n["min_size"], k + ".min_size");
  if (n["part_size"]) out.part_size = r.size(n["part_size"], k + ".part_size");
  if (n["max_parallel"])
    out.max_parallel =
        static_cast<unsigned>(r.count(n["max_parallel"], k + ".max_parallel", 2, 16));
  if (out.part_size < (64u << 10) || out.part_size > (256u << 20))
    r.fail(n["part_size"] ? n["part_size"] : n, k + ".part_size",
           "must be between 64KiB and 256MiB (each part in flight is held in memory)");
  if (out.min_size < out.part_size * 2)
    r.fail(n["min_size"] ? n["min_size"] : n, k + ".min_size",
           "must be at least twice part_size (a smaller object has nothing to stripe)");
}

void read_cluster_limits(const reader& r, const YAML::Node& n, const std::string& k,
                         cluster_limits& out) {
  r.only_keys(n, k,
              {"max_inflight", "max_pending", "pending_timeout", "client_key", "client_share",
               "client_cap"});
  if (n["max_inflight"])
    out.max_inflight = r.count(n["max_inflight"], k + ".max_inflight", 1, 10000000);
  if (n["max_pending"])
    out.max_pending = r.count(n["max_pending"], k + ".max_pending", 0, 10000000);
  if (n["pending_timeout"])
    out.pending_timeout = positive(r, n["pending_timeout"], k + ".pending_timeout");
  if (auto ck = n["client_key"]) {
    auto v = r.scalar(ck, k + ".client_key");
    std::transform(v.begin(), v.end(), v.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    bool token = !v.empty();
    for (unsigned char c : v)
      token = token &&
              (std::isalnum(c) || std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) !=
                                      std::string_view::npos);
    if (!token)
      r.fail(ck, k + ".client_key",
             common::cat("'", v,
                         "' is neither ip, tls_client nor a header name (e.g. authorization, "
                         "x-api-key)"));
    out.client_key = v;
  }
  if (n["client_cap"]) out.client_cap = ratio(r, n["client_cap"], k + ".client_cap", 0.01, 1);
  if (n["client_share"]) {
    if (out.client_key.empty())
      r.fail(n["client_share"], k + ".client_share", "needs client_key (ip or a header name)");
    out.client_share = ratio(r, n["client_share"], k + ".client_share", 0.01, 1);
  }
}

request_priority read_priority(const reader& r, const YAML::Node& n, const std::string& k) {
  auto s = r.scalar(n, k);
  if (s == "critical") return request_priority::critical;
  if (s == "standard") return request_priority::standard;
  if (s == "sheddable") return request_priority::sheddable;
  r.fail(n, k,
         common::cat("unknown priority '", s, "' (expected critical, standard or sheddable)"));
}

// after: a duration (250ms) or a percentile of the route's observed time to first byte (p90,
// p99.5); max_extra: the share of extra requests hedging may add.
void read_hedge(const reader& r, const YAML::Node& n, const std::string& k, hedge_config& out) {
  r.only_keys(n, k, {"after", "max_extra"});
  if (!n["after"])
    r.fail(n, k + ".after", "missing (a duration such as 200ms, or a percentile such as p90)");
  out.enabled = true;
  auto s = r.scalar(n["after"], k + ".after");
  if (!s.empty() && s[0] == 'p') {
    char* end = nullptr;
    double q = std::strtod(s.c_str() + 1, &end);
    if (s.size() < 2 || end != s.c_str() + s.size() || !(q >= 1 && q < 100))
      r.fail(n["after"], k + ".after",
             common::cat("invalid percentile '", s, "' (expected p1 to p99.9, e.g. p90)"));
    out.quantile = q / 100;
  } else {
    out.after = positive(r, n["after"], k + ".after");
  }
  if (n["max_extra"]) out.max_extra = ratio(r, n["max_extra"], k + ".max_extra", 0.001, 1);
}

// `resume: true` (one continuation), `false`, or `{ attempts: N }`: OpenAI streams (inference
// clusters) and object GETs (storage clusters, where it is on by default).
void read_resume(const reader& r, const YAML::Node& n, const std::string& k, cluster_kind kind,
                 resume_config& out) {
  if (n.IsScalar()) {
    out.attempts = r.boolean(n, k) ? 1 : 0;
  } else {
    r.only_keys(n, k, {"attempts"});
    out.attempts =
        n["attempts"] ? static_cast<unsigned>(r.count(n["attempts"], k + ".attempts", 1, 8)) : 1;
  }
  if (out.attempts > 0 && kind == cluster_kind::generic)
    r.fail(n, k,
           "resumes OpenAI streams or object GETs: the route's cluster must be kind: inference "
           "or storage");
}

void read_drain(const reader& r, const YAML::Node& n, drain_config& out) {
  r.only_keys(n, "drain", {"shutdown_delay", "timeout"});
  if (n["shutdown_delay"]) out.shutdown_delay = r.dur(n["shutdown_delay"], "drain.shutdown_delay");
  if (n["timeout"]) out.timeout = r.dur(n["timeout"], "drain.timeout");
}

void read_dns(const reader& r, const YAML::Node& n, dns_config& out) {
  r.only_keys(n, "dns", {"refresh", "hosts_file"});
  if (n["refresh"]) {
    out.refresh = positive(r, n["refresh"], "dns.refresh");
    if (out.refresh < std::chrono::milliseconds(100))
      r.fail(n["refresh"], "dns.refresh", "must be at least 100ms");
  }
  if (n["hosts_file"]) {
    out.hosts_file = r.scalar(n["hosts_file"], "dns.hosts_file");
    std::ifstream in(out.hosts_file);
    if (out.hosts_file.empty() || !in)
      r.fail(n["hosts_file"], "dns.hosts_file", common::cat("cannot read '", out.hosts_file, "'"));
  }
}

}  // namespace meridian::config
