// The YAML schema as plain structs, and its loader/validator. A loaded config is immutable and
// shared read-only by every thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace meridian::config {

using duration = std::chrono::nanoseconds;

struct host_port {
  std::string host;
  std::uint16_t port = 0;
  std::string to_string() const;
};

struct listener_config {
  std::string name;
  host_port address;
};

struct admin_config {
  host_port address{"127.0.0.1", 9901};
};

enum class io_backend { auto_select, io_uring, epoll };
enum class cluster_kind { inference, storage, generic };
enum class balancer_kind { round_robin, least_request };

struct limits_config {
  std::size_t max_header_bytes = 64 * 1024;
  std::size_t max_headers = 100;
  std::size_t max_body_bytes = 32 * 1024 * 1024;
  std::size_t max_connections_per_worker = 10000;
  // How much of a POST body the router may read to find the JSON "model" field.
  std::size_t model_peek_bytes = 64 * 1024;
  // How much of a request body must have arrived (or all of it, if smaller) before the gateway
  // takes an upstream connection for it: a client trickling its body holds no backend.
  std::size_t body_prebuffer_bytes = 64 * 1024;
};

struct timeouts_config {
  duration header = std::chrono::seconds(10);  // absolute, from a request's first byte
  duration body = std::chrono::seconds(30);    // absolute: the whole body, from the head's end
  duration idle = std::chrono::seconds(60);    // keep-alive between requests
  duration upstream_connect = std::chrono::seconds(2);
  duration upstream_response = std::chrono::seconds(300);  // request sent -> response head
  duration upstream_idle = std::chrono::seconds(120);      // between two reads of a response
};

struct drain_config {
  duration shutdown_delay = std::chrono::seconds(1);
  duration timeout = std::chrono::seconds(30);
};

struct endpoint_config {
  host_port address;
  std::string zone;
};

struct pool_config {
  std::size_t max_idle_per_endpoint = 64;           // per worker
  std::size_t max_connections_per_endpoint = 1024;  // per worker, idle + busy
  duration idle_timeout = std::chrono::seconds(30);
};

struct cluster_config {
  std::string name;
  cluster_kind kind = cluster_kind::generic;
  balancer_kind balancer = balancer_kind::least_request;
  std::vector<endpoint_config> endpoints;
  pool_config pool;
};

struct header_match {
  std::string name;  // lower-cased
  std::string value;
};

struct route_match {
  std::optional<std::string> path_prefix;
  std::optional<std::string> path;
  std::optional<std::string> host;  // lower-cased, without port
  std::optional<std::string> method;
  std::vector<header_match> headers;  // all must match exactly
  std::optional<std::string> model;   // JSON body "model" field of a POST
};

struct route_config {
  std::string name;
  route_match match;
  std::string cluster;
  std::size_t cluster_index = 0;  // resolved at load
};

struct gateway_config {
  std::vector<listener_config> listeners;
  admin_config admin;
  unsigned workers = 0;  // 0 = one per core
  io_backend io = io_backend::auto_select;
  std::vector<cluster_config> clusters;
  std::vector<route_config> routes;
  limits_config limits;
  timeouts_config timeouts;
  drain_config drain;
  bool access_log = true;
  std::string source;  // file name for messages

  bool any_model_route() const;
};

// Thrown at load time only: "file:line:col: key: why".
class config_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// `overrides` are "key.path=value" strings (e.g. "clusters[0].balancer=round_robin") applied to
// the YAML tree before validation, so every key can be set from the command line.
std::shared_ptr<const gateway_config> load_file(const std::string& path,
                                                const std::vector<std::string>& overrides = {});
std::shared_ptr<const gateway_config> load_string(const std::string& yaml,
                                                  const std::string& source_name,
                                                  const std::vector<std::string>& overrides = {});

std::string_view to_string(io_backend b);
std::string_view to_string(balancer_kind b);
std::string_view to_string(cluster_kind k);

}  // namespace meridian::config
