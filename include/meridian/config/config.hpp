// The YAML schema as plain structs, and its loader/validator. A loaded config is immutable and
// shared read-only by every thread.
#pragma once

#include <array>
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
  bool operator==(const host_port&) const = default;
};

// A TLS listener's settings (listeners[].tls). Certificates are picked by SNI from each
// certificate's own names (the first is the default); an ECDSA and an RSA certificate for the
// same names are served side by side, each to the clients that support it.
struct tls_certificate {
  std::string cert;  // PEM: the leaf first, then its chain
  std::string key;   // PEM private key
  bool is_default = false;  // served when SNI names no certificate's name (else the first)
  bool operator==(const tls_certificate&) const = default;
};
struct listener_tls_config {
  std::vector<tls_certificate> certificates;
  int min_version = 12;                      // 12: TLS 1.2, 13: TLS 1.3
  std::vector<std::string> alpn{"http/1.1"};  // offered protocols, in preference order
  std::string client_ca;                     // non-empty: mutual TLS, client certificates verified
  bool session_tickets = true;               // keys in memory, rotated hourly, shared by workers
  duration handshake_timeout = std::chrono::seconds(10);
  bool operator==(const listener_tls_config&) const = default;
};

struct listener_config {
  std::string name;
  host_port address;
  std::optional<listener_tls_config> tls;  // absent: plain HTTP
  bool http2 = false;  // plain listener: h2c with prior knowledge beside HTTP/1.1
  bool operator==(const listener_config&) const = default;
};

// The admin listener. Mutating requests (drain, reload) need `Authorization: Bearer <token>`
// with the token read from token_file; with none configured they are refused unless the
// listener is on loopback.
struct admin_config {
  host_port address{"127.0.0.1", 9901};
  std::string token_file;
  std::string token;  // the file's content, trailing whitespace removed; a secret
  bool operator==(const admin_config&) const = default;
};

enum class io_backend { auto_select, io_uring, epoll };
// grpc_inference: KServe v2 / Triton gRPC backends, spoken to over HTTP/2 (h2c).
enum class cluster_kind { inference, storage, generic, grpc_inference };
enum class balancer_kind { round_robin, least_request, peak_ewma, latency_aware, bandwidth_aware };
// Where a storage cluster sends writes (PUT): the first healthy endpoint in the configured
// order, or the first in the gateway's zone (then the others in order).
enum class write_target { first_healthy, zone_local };

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
  // The slowest a client may send its request body or read a response, in bytes/s, once it has
  // waited timeouts.data_rate_window (each byte earns 1/min_data_rate s of waiting, never more
  // than the window); 0: no floor. A request body below it: 408; a response: the connection
  // closes. Nothing upstream waits on a client that does not keep up.
  std::size_t min_data_rate = 1024;
  // HTTP/2: streams one connection may have open (and being served) at once.
  std::uint32_t max_concurrent_streams = 100;
};

// When an upstream exchange gives up; per cluster, each key overridable per route.
struct upstream_timeouts {
  duration connect = std::chrono::seconds(2);
  // The request sent -> the response's first body byte (a stream's first event: its first
  // token); a bodiless response ends it at its head.
  duration first_byte = std::chrono::seconds(300);
  duration idle = std::chrono::seconds(120);  // between two reads of a response (stream events)
  duration total = duration::zero();  // from the request's first byte, every attempt and the
                                      // whole response; zero: none
};

// The downstream timeouts, and the upstream ones every cluster starts from.
struct timeouts_config {
  duration header = std::chrono::seconds(10);  // absolute, from a request's first byte
  duration body = std::chrono::seconds(30);    // absolute: the whole body, from the head's end
  duration idle = std::chrono::seconds(60);    // keep-alive between requests
  duration data_rate_window = std::chrono::seconds(10);  // see limits.min_data_rate
  upstream_timeouts upstream;  // keys upstream_connect, upstream_response (first_byte),
                               // upstream_idle
};

// What may be retried (bit set of retry_config::on).
enum retry_on : unsigned {
  retry_connect_failure = 1,        // connect refused, timed out, or the endpoint's cap reached
  retry_reset_before_request = 2,   // the connection failed before a request byte was written
  retry_reset_before_response = 4,  // closed after the request went out, before a response head
  retry_status_503 = 8,             // a 503 head, nothing sent to the client yet
  retry_grpc_status = 16,           // a gRPC answer with no message whose status is in grpc_codes
};

// Retries to another endpoint: at most `attempts` tries in all, only for the failures in `on`,
// and only while the cluster's budget allows (per worker: retries within the last ten seconds
// stay under budget_ratio times the requests plus budget_min_per_second times ten, the floor
// shared among the workers). Never once a response byte reached the client, never with a
// request body the gateway no longer holds whole.
struct retry_config {
  unsigned attempts = 3;
  double budget_ratio = 0.2;
  double budget_min_per_second = 10;
  unsigned on = retry_connect_failure | retry_reset_before_request;
  // gRPC statuses retried (bit 1 << code) when a backend answers with no message (trailers-only):
  // Envoy's names in `on`: cancelled, deadline-exceeded, internal, resource-exhausted, unavailable.
  std::uint32_t grpc_codes = 0;
};

// TTFT hedging (a route's opt-in): a request with no response byte (a stream's first token) by
// `after` (or the route's observed `quantile` of it) goes also to the next candidate; the first
// to answer wins and the other is cancelled. Hedges stay under `max_extra` times the requests.
struct hedge_config {
  bool enabled = false;
  duration after{};     // a fixed delay, when quantile is 0
  double quantile = 0;  // e.g. 0.9: the route's observed p90 time to first byte
  double max_extra = 0.05;
  bool operator==(const hedge_config&) const = default;
};

// A stream cut by its backend after the client got tokens is continued on another endpoint
// with the text so far (at most `attempts` times per request); 0: off.
struct resume_config {
  unsigned attempts = 0;
  bool operator==(const resume_config&) const = default;
};

struct drain_config {
  duration shutdown_delay = std::chrono::seconds(1);
  duration timeout = std::chrono::seconds(30);
  bool operator==(const drain_config&) const = default;
};

// How hostnames among the endpoints are found: re-resolved every `refresh` (each address a name
// has becomes an endpoint), from `hosts_file` ("address name..." lines, as /etc/hosts) when set,
// else the system resolver.
struct dns_config {
  duration refresh = std::chrono::seconds(10);
  std::string hosts_file;
  bool operator==(const dns_config&) const = default;
};

struct endpoint_config {
  host_port address;
  std::string zone;
  bool operator==(const endpoint_config&) const = default;
};

struct pool_config {
  std::size_t max_idle_per_endpoint = 64;           // per worker
  std::size_t max_connections_per_endpoint = 1024;  // per worker, idle + busy
  duration idle_timeout = std::chrono::seconds(30);
  bool operator==(const pool_config&) const = default;
};

// Active health and RTT probes: one GET on a fresh connection per endpoint per interval
// (jittered by up to a tenth), healthy after `rise` successes in a row, unhealthy after `fall`
// failures. Off unless configured.
struct probe_config {
  bool enabled = false;
  std::string path = "/health";
  duration interval = std::chrono::seconds(1);
  duration timeout = std::chrono::milliseconds(500);
  unsigned rise = 2;
  unsigned fall = 3;
  bool operator==(const probe_config&) const = default;
};

// Scrapes of the backend's own Prometheus metrics for queue depth, running requests and
// KV-cache use. Each list names the metrics summed (waiting, running) or maxed (kv) into that
// signal; empty lists mean the vLLM, SGLang, TGI and Triton names. Off unless configured.
struct load_metrics_config {
  bool enabled = false;
  std::string path = "/metrics";
  duration interval = std::chrono::seconds(1);
  duration timeout = std::chrono::milliseconds(500);
  // A reading older than this counts less, then not at all (at twice the age).
  duration stale_after = std::chrono::seconds(2);
  // The port the metrics are served on where it is not the endpoint's own (Triton: 8002 beside
  // gRPC's 8001); 0: the endpoint's port.
  std::uint16_t port = 0;
  std::vector<std::string> waiting, running, kv_cache_usage;
  bool operator==(const load_metrics_config&) const = default;
};

// Discovery of the models each endpoint serves from its own GET /v1/models (gRPC backends: Triton's
// RepositoryIndex, models READY; where that is not implemented, ModelReady for each of `names`).
// On by default for inference and grpc_inference clusters.
struct models_config {
  bool enabled = false;
  std::string path = "/v1/models";
  duration interval = std::chrono::seconds(10);
  duration timeout = std::chrono::seconds(1);
  std::vector<std::string> names;  // grpc_inference only
  bool operator==(const models_config&) const = default;
};

// The latency_aware and peak_ewma cost model.
struct latency_config {
  duration decay = std::chrono::seconds(10);             // PeakEWMA time constant
  duration zone_margin = std::chrono::milliseconds(20);  // another zone must win by this much
  double kv_threshold = 0.8;  // KV-cache use above which an endpoint is penalised
  // Concurrent requests an endpoint serves before it queues, until scraped running counts
  // teach the real figure.
  unsigned capacity = 8;
  duration cold_latency = std::chrono::milliseconds(100);  // an endpoint never measured
  bool operator==(const latency_config&) const = default;
};

// Passive outlier ejection (per worker): consecutive 5xx responses or connect failures eject
// an endpoint for base_ejection times the number of times it was ejected (capped), never more
// than max_ejected_share of the cluster; a passing probe brings it back early. On routes that
// hedge, a try still without a first byte at the hedge deadline whose hedge then answered first
// is a per-try timeout (as Envoy counts them): consecutive_hedge_losses of those in a row, with
// no try of the endpoint answering before the deadline in between, eject it for slowness, which
// only time lifts (a probe proves it alive, not fast).
struct outlier_config {
  unsigned consecutive_5xx = 5;
  unsigned consecutive_connect_failures = 3;
  unsigned consecutive_hedge_losses = 5;
  duration base_ejection = std::chrono::seconds(10);
  duration max_ejection = std::chrono::minutes(5);
  double max_ejected_share = 0.5;
  bool operator==(const outlier_config&) const = default;
};

// Prompt-prefix affinity (latency_aware on inference clusters, where it is on unless turned off):
// the prompt is hashed in
// blocks of block_bytes; each worker remembers which endpoint got which blocks (at most
// `capacity` blocks) and the cost gains the prefill of the part an endpoint does not hold.
// No endpoint gets the benefit beyond load_factor times its fair share of requests in flight.
// With session_header set, its value (not the prompt) chooses the endpoint a conversation
// sticks to.
struct prefix_affinity_config {
  bool enabled = false;
  std::size_t block_bytes = 64;
  std::size_t capacity = 1 << 16;
  double load_factor = 1.25;
  std::string session_header;                                   // lower-cased; empty: none
  duration prefill_per_block = std::chrono::microseconds(500);  // prior until learned
  bool operator==(const prefix_affinity_config&) const = default;
};

// Storage striping (opt-in): a GET of a whole object known to be at least min_size is fetched
// as Range parts of part_size, up to max_parallel at once over the replicas, and delivered in
// order; a part that lags is asked of another replica too.
struct stripe_config {
  bool enabled = false;
  std::uint64_t min_size = 64ull << 20;
  std::uint64_t part_size = 8ull << 20;
  unsigned max_parallel = 4;
  bool operator==(const stripe_config&) const = default;
};

// Admission under overload (per cluster; the gateway's figures, split over the workers): at
// most max_inflight requests upstream at once (0: the endpoints' connection caps), the rest
// wait by priority, at most max_pending of them (unset: as many as the workers hold client
// connections, so every request accepted may wait) and each at most pending_timeout; past that
// they are shed with 503 and Retry-After.
struct cluster_limits {
  std::size_t max_inflight = 0;
  std::optional<std::size_t> max_pending;
  duration pending_timeout = std::chrono::seconds(5);
  // Per-client fairness when full: who a client is ("ip", or a request header such as
  // authorization or x-api-key; empty: off), and the share of max_inflight one client may hold
  // before its next request gets 429 instead of a place in the queue.
  std::string client_key;
  double client_share = 0.5;
  // The part of the cluster's connections (endpoints x pool.max_connections_per_endpoint, per
  // worker) one client (client_key, else its address) may hold at any time, full or not: its
  // next request gets 429. 1: no cap. Behind a proxy that hides client addresses, set client_key
  // to a header that tells clients apart.
  double client_cap = 0.5;
};

enum class request_priority { sheddable, standard, critical };

// A cluster's TLS to its endpoints (clusters[].tls): the server's certificate is verified
// against `ca` (the system's store when empty) and the name the gateway connects by, unless
// `verify: false` says otherwise explicitly; an optional client certificate for mutual TLS.
struct upstream_tls_config {
  std::string ca;    // PEM bundle; empty: the system's default store
  bool verify = true;
  std::string sni;   // the name sent and verified; empty: the endpoint's host name
  std::string cert;  // the gateway's client certificate (PEM chain), with `key`
  std::string key;
  int min_version = 12;  // 12: TLS 1.2, 13: TLS 1.3
  // Set from the cluster's kind, not a key: gRPC backends are offered only h2 by ALPN, every
  // other cluster only http/1.1.
  bool h2 = false;
  bool operator==(const upstream_tls_config&) const = default;
};

struct cluster_config {
  std::string name;
  cluster_kind kind = cluster_kind::generic;
  balancer_kind balancer = balancer_kind::least_request;
  write_target write_to = write_target::first_healthy;  // storage with bandwidth_aware
  std::vector<endpoint_config> endpoints;
  pool_config pool;
  probe_config probe;
  load_metrics_config load_metrics;
  models_config models;
  latency_config latency;
  outlier_config outlier;
  prefix_affinity_config prefix_affinity;
  stripe_config stripe;
  upstream_timeouts timeouts;
  retry_config retries;
  cluster_limits limits;
  std::optional<upstream_tls_config> tls;  // absent: plain TCP
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
  // The verified client certificate's subject (mutual TLS), RFC 2253, exactly.
  std::optional<std::string> client_subject;
  // gRPC: the service (package.Service) of the request's :path, /package.Service/Method.
  std::optional<std::string> grpc_service;
};

struct route_config {
  std::string name;
  route_match match;
  std::string cluster;
  std::size_t cluster_index = 0;  // resolved at load
  upstream_timeouts timeouts;     // the cluster's, with the route's own keys over them
  retry_config retries;           // likewise
  hedge_config hedge;
  resume_config resume;
  request_priority priority = request_priority::standard;  // unless x-priority says otherwise
};

// tenants: who may call, with which key, and how much (the keys themselves live in keys_file, as
// SHA-256 hashes, re-read on reload and when the file changes).
struct tenants_config {
  bool enabled = false;  // the section is present
  std::string keys_file;
  // Where the key is read: "authorization" ("Bearer <key>") or another header holding the key
  // as is; x-api-key is always read too (Anthropic's and Azure's clients send it).
  std::string header = "authorization";
  bool require = true;  // false: requests without a key are the tenant "anonymous"
  // A model the tenant may not use: 403 (false) or 404 model_not_found (true: the tenant does
  // not learn that it exists).
  bool hide_models = false;
  // The completion tokens charged up front when a request names no max_tokens.
  std::uint64_t default_max_tokens = 256;
  // Limits shared by every replica through Redis: each replica enforces its share of each limit,
  // the shares rebalanced by demand every sync_interval (never on the request path).
  struct redis_store {
    host_port address;
    std::string prefix = "meridian:";
    duration sync_interval = std::chrono::milliseconds(100);
    bool operator==(const redis_store&) const = default;
  };
  std::optional<redis_store> redis;
  bool operator==(const tenants_config&) const = default;
};

using key_digest = std::array<unsigned char, 32>;  // SHA-256

enum class limit_counts { requests, tokens, prompt_tokens, completion_tokens };

// A tenant's limit: `amount` of `what` per `window` (a minute or a day), refilled continuously.
struct tenant_limit {
  std::string name;  // as written: "tokens_per_minute"
  limit_counts what = limit_counts::requests;
  double amount = 0;
  duration window{};
  bool operator==(const tenant_limit&) const = default;
};

// One tenant of the keys file.
struct tenant_config {
  std::string name;
  std::vector<key_digest> keys;
  // Verified client certificates' subjects (RFC 2253, as the access log's tls_client shows them)
  // that name this tenant on a mutual-TLS listener when the request presents no key.
  std::vector<std::string> subjects;
  std::vector<std::string> models;  // patterns (`*` any run); empty: every model
  std::optional<request_priority> priority;
  std::vector<tenant_limit> limits;
  unsigned concurrent = 0;  // requests at once; 0: no cap
};

// The keys file: `tenants:` a list of { name, keys: [ "sha256:<hex>" ], subjects, models, priority,
// limits: { requests_per_minute, tokens_per_minute, prompt_tokens_per_minute,
// completion_tokens_per_minute, the same _per_day, concurrent } }. Throws config_error with
// file:line:col.
std::vector<tenant_config> parse_keys(const std::string& yaml, const std::string& source);
std::vector<tenant_config> load_keys_file(const std::string& path);

struct gateway_config {
  std::vector<listener_config> listeners;
  admin_config admin;
  std::string zone;  // the gateway's own zone: its endpoints are preferred (latency.zone_margin)
  unsigned workers = 0;  // 0 = one per core
  io_backend io = io_backend::auto_select;
  std::vector<cluster_config> clusters;
  std::vector<route_config> routes;
  limits_config limits;
  timeouts_config timeouts;
  drain_config drain;
  dns_config dns;
  tenants_config tenants;
  bool access_log = true;
  std::string source;  // file name for messages
  // The YAML as loaded, --set overrides applied and secret values redacted (GET /admin/config);
  // keys left out take their defaults.
  std::string effective_yaml;

  bool any_model_route() const;
};

// Why `next` cannot replace `current` without a restart (listeners, admin, workers, io backend,
// zone, drain, access log, dns; the clusters' names, kinds, probes, load metrics and model
// discovery; the routes' names and clusters), or empty when a reload can apply it: everything
// else (endpoints added or removed, balancers and their cost model, prefix affinity, outlier
// ejection, pools, timeouts, retries, limits, route matches and priorities, the global limits
// and timeouts).
std::string restart_needed(const gateway_config& current, const gateway_config& next);

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
