// Readers of the cluster sections that feed routing: probe, load_metrics, models, latency and
// outlier. Used while loading, on the loading thread.
#pragma once

#include "config/reader.hpp"

namespace meridian::config {

// Listeners (listeners.cpp): the section, and whether two listening addresses would conflict.
std::vector<listener_config> read_listeners(const reader& r, const YAML::Node& root);
bool listeners_overlap(const host_port& a, const host_port& b);

void read_probe(const reader& r, const YAML::Node& n, const std::string& k, probe_config& out);
void read_load_metrics(const reader& r, const YAML::Node& n, const std::string& k,
                       load_metrics_config& out);
void read_models(const reader& r, const YAML::Node& n, const std::string& k, models_config& out);
void read_latency(const reader& r, const YAML::Node& n, const std::string& k, latency_config& out);
void read_prefix_affinity(const reader& r, const YAML::Node& n, const std::string& k,
                          prefix_affinity_config& out);
void read_outlier(const reader& r, const YAML::Node& n, const std::string& k, outlier_config& out);
// A cluster's or a route's: keys given replace those already in `out`.
void read_upstream_timeouts(const reader& r, const YAML::Node& n, const std::string& k,
                            upstream_timeouts& out);
void read_cluster_limits(const reader& r, const YAML::Node& n, const std::string& k,
                         cluster_limits& out);
void read_balancer(const reader& r, const YAML::Node& n, const std::string& k, cluster_config& c);
void read_stripe(const reader& r, const YAML::Node& n, const std::string& k, stripe_config& out);
// `route`: a route's retries, which share their cluster's budget and so set none.
void read_retries(const reader& r, const YAML::Node& n, const std::string& k, retry_config& out,
                  bool route, bool grpc);
// routes[i] (config/routes.cpp), against the clusters already read.
route_config read_route(const reader& r, const YAML::Node& n, const std::string& k,
                        const std::vector<cluster_config>& clusters);
// listeners[i].tls (config/tls.cpp).
listener_tls_config read_listener_tls(const reader& r, const YAML::Node& n, const std::string& k);
upstream_tls_config read_upstream_tls(const reader& r, const YAML::Node& n, const std::string& k);
// `root` emitted as YAML with the values of secret-looking keys (token, secret, password,
// api_key, authorization; a *_file key is a path and stays) replaced by "<redacted>".
std::string redacted_yaml(const YAML::Node& root);

request_priority read_priority(const reader& r, const YAML::Node& n, const std::string& k);
void read_resume(const reader& r, const YAML::Node& n, const std::string& k, cluster_kind kind,
                 resume_config& out);
void read_drain(const reader& r, const YAML::Node& n, drain_config& out);
void read_dns(const reader& r, const YAML::Node& n, dns_config& out);
void read_tenants(const reader& r, const YAML::Node& n, tenants_config& out);
void read_hedge(const reader& r, const YAML::Node& n, const std::string& k, hedge_config& out);

}  // namespace meridian::config
