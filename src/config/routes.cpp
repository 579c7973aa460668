// routes[]: the cluster, the match (path, host, method, headers, the body's model, the client
// certificate's subject) and the route's own timeouts, retries, priority, hedge and resume.
// Used while loading, on the loading thread.
#include <algorithm>
#include <cctype>

#include "config/sections.hpp"

namespace meridian::config {

route_config read_route(const reader& r, const YAML::Node& n, const std::string& k,
                        const std::vector<cluster_config>& clusters) {
  r.only_keys(n, k,
              {"name", "match", "cluster", "timeouts", "retries", "priority", "hedge", "resume"});
  route_config rc;
  if (!n["cluster"]) r.fail(n, k + ".cluster", "missing (which cluster serves this route?)");
  rc.cluster = r.scalar(n["cluster"], k + ".cluster");
  auto it = std::find_if(clusters.begin(), clusters.end(),
                         [&](const cluster_config& c) { return c.name == rc.cluster; });
  if (it == clusters.end())
    r.fail(n["cluster"], k + ".cluster", common::cat("no cluster named '", rc.cluster, "'"));
  rc.cluster_index = static_cast<std::size_t>(it - clusters.begin());
  rc.name = n["name"] ? r.scalar(n["name"], k + ".name") : rc.cluster;
  rc.timeouts = it->timeouts;
  rc.retries = it->retries;
  if (auto p = n["timeouts"]) read_upstream_timeouts(r, p, k + ".timeouts", rc.timeouts);
  const bool grpc = it->kind == cluster_kind::grpc_inference;
  if (auto p = n["retries"]) read_retries(r, p, k + ".retries", rc.retries, true, grpc);
  // A gRPC call is retried (before any answer), not hedged or resumed: refused, not ignored.
  for (const char* key : {"hedge", "resume"})
    if (grpc && n[key])
      r.fail(n[key], reader::join(k, key),
             common::cat("not available on a route to kind: grpc_inference (cluster '", it->name,
                         "'): gRPC calls are retried before any answer, not ", key, "d"));
  if (auto p = n["priority"]) rc.priority = read_priority(r, p, k + ".priority");
  if (auto p = n["hedge"]) read_hedge(r, p, k + ".hedge", rc.hedge);
  // An object GET cut mid-body is continued from another replica unless the route says no.
  if (it->kind == cluster_kind::storage) rc.resume.attempts = 2;
  if (auto p = n["resume"]) read_resume(r, p, k + ".resume", it->kind, rc.resume);
  if (auto m = n["match"]) {
    auto mk = k + ".match";
    r.only_keys(m, mk,
                {"path_prefix", "path", "host", "method", "headers", "model", "client_subject",
                 "grpc_service"});
    auto path_like = [&](const char* key, std::optional<std::string>& out) {
      if (!m[key]) return;
      out = r.scalar(m[key], reader::join(mk, key));
      if (out->empty() || out->front() != '/')
        r.fail(m[key], reader::join(mk, key), "must start with /");
    };
    path_like("path_prefix", rc.match.path_prefix);
    path_like("path", rc.match.path);
    if (m["host"]) rc.match.host = lower(r.scalar(m["host"], mk + ".host"));
    if (m["method"]) {
      rc.match.method = r.scalar(m["method"], mk + ".method");
      for (char ch : *rc.match.method)
        if (ch < 'A' || ch > 'Z')
          r.fail(m["method"], mk + ".method", "must be an upper-case method such as POST");
    }
    if (auto g = m["grpc_service"]) {
      // package.Service: matched as the :path prefix /package.Service/ (gRPC's paths).
      auto svc = r.scalar(g, mk + ".grpc_service");
      bool ok = !svc.empty() && svc.front() != '.' && svc.back() != '.';
      for (char ch : svc)
        if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '.' || ch == '_')) ok = false;
      if (!ok)
        r.fail(g, mk + ".grpc_service",
               "expected a gRPC service name such as inference.GRPCInferenceService");
      if (rc.match.path_prefix || rc.match.path)
        r.fail(g, mk + ".grpc_service", "a gRPC route matches its service, not a path as well");
      if (it->kind != cluster_kind::grpc_inference)
        r.fail(g, mk + ".grpc_service",
               common::cat("cluster '", it->name, "' is not kind: grpc_inference"));
      rc.match.grpc_service = svc;
      rc.match.path_prefix = "/" + svc + "/";
    }
    if (m["model"]) {
      rc.match.model = r.scalar(m["model"], mk + ".model");
      if (rc.match.model->empty()) r.fail(m["model"], mk + ".model", "must not be empty");
    }
    if (m["client_subject"]) {
      rc.match.client_subject = r.scalar(m["client_subject"], mk + ".client_subject");
      if (rc.match.client_subject->empty())
        r.fail(m["client_subject"], mk + ".client_subject",
               "must not be empty (write the subject as the access log's tls_client shows it)");
    }
    if (auto h = m["headers"]) {
      if (!h.IsMap()) r.fail(h, mk + ".headers", "expected a mapping of header name to value");
      for (const auto& kv : h) {
        auto name = lower(kv.first.as<std::string>());
        rc.match.headers.push_back({name, r.scalar(kv.second, mk + ".headers." + name)});
      }
    }
  }
  return rc;
}

}  // namespace meridian::config
