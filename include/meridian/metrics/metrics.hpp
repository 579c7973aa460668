// Every Prometheus family Meridian exports, declared in one place. Each worker thread owns one
// worker_metrics block and is the only thread that writes it; the registry is built on the main
// thread before workers start, and serialize() and the sums may be called from any thread.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace meridian::metrics {

// Blocks written by different workers never share a cache line (no false sharing).
inline constexpr std::size_t cache_line = 64;

// The bounded label sets known at startup: routes, clusters, listeners, and the first set of
// endpoints (a reload or DNS may change which endpoints a cluster has: registry::endpoint()).
struct layout {
  std::vector<std::string> routes;
  std::vector<std::string> route_clusters;  // cluster of each route
  std::vector<std::string> clusters;
  std::vector<std::vector<std::string>> endpoints;  // per cluster, "host:port"
  std::vector<std::string> listeners;
  std::vector<bool> tls_clusters;  // per cluster: it speaks TLS to its endpoints
};

enum class reject_reason {
  bad_request,
  head_too_large,
  body_too_large,
  header_timeout,
  body_timeout,
  overloaded,
  no_route,
  unauthenticated,  // a tenant's key missing or unknown (401)
  forbidden,        // a model the tenant may not use (403, or 404 where models are hidden)
  rate_limited,     // over a tenant's limit (429)
  count_
};

// Why the gateway ended an HTTP/2 connection (GOAWAY) or reset a client's stream
// (meridian_http2_goaway_total, meridian_http2_stream_resets_total{by="gateway"}).
enum class h2_reason {
  drain,               // graceful drain: GOAWAY, open streams finish
  idle,                // no stream for the idle timeout
  header_timeout,      // a header block not finished within the header timeout
  write_stall,         // the client stopped reading the connection
  bad_preface,         // not an HTTP/2 client preface
  protocol_error,      // malformed frames or headers (RFC 9113)
  compression_error,   // HPACK that does not decode
  flow_control,        // a flow-control window overrun
  rapid_reset,         // streams opened and cancelled faster than the limit (CVE-2023-44487)
  continuation_flood,  // a header block in too many CONTINUATION frames (CVE-2024-27316)
  control_flood,       // SETTINGS, PING, WINDOW_UPDATE, PRIORITY or empty DATA frames past the limit
  header_list_too_large,  // a header list far past the limit (an HPACK bomb)
  refused,             // a new stream past max_concurrent_streams (REFUSED_STREAM)
  stalled,             // a stream whose window stayed shut (zero-window stall)
  broken,              // a response cut off upstream
  other,
  count_
};
std::string_view to_string(h2_reason r);

// The status codes meridian_requests_total counts under their own `code` label (a bounded set:
// what the gateway sends and what model servers and object stores commonly answer); any other
// is code="other" within its class.
inline constexpr std::array<int, 30> known_status_codes{
    200, 201, 202, 204, 206, 301, 302, 303, 304, 307, 308, 400, 401, 403, 404,
    405, 408, 409, 410, 413, 415, 422, 429, 431, 499, 500, 501, 502, 503, 504};
// Slots of route_metrics::requests: [0] no response was sent, then the known codes, then
// "other" for each class 1xx .. 5xx.
inline constexpr std::size_t status_slots = 1 + known_status_codes.size() + 5;
inline std::size_t status_index(int status) {
  if (status < 100 || status >= 600) return 0;
  auto it = std::lower_bound(known_status_codes.begin(), known_status_codes.end(), status);
  if (it != known_status_codes.end() && *it == status)
    return 1 + static_cast<std::size_t>(it - known_status_codes.begin());
  return 1 + known_status_codes.size() + static_cast<std::size_t>(status / 100 - 1);
}

enum class upstream_error { connect, reset, timeout, protocol, count_ };

// What failed before a retry (meridian_upstream_retries_total's reason), and why a response
// that had started reaching the client was cut (meridian_streams_interrupted_total's).
enum class retry_reason {
  connect_failure,
  reset_before_request,
  reset_before_response,
  status_503,
  grpc_status,  // a gRPC answer with no message and a status the route retries
  count_
};
enum class interruption { upstream, deadline };
// Why admission shed a request (meridian_requests_shed_total's reason).
enum class shed_reason { queue_full, timeout, displaced, client_share, count_ };

// Why a request went to an endpoint (routing_decisions_total's reason): the balancer's choice
// by score or by its rule, panic mode (no healthy endpoint), or a retry to the next candidate.
enum class decision { score, round_robin, least_request, panic, retry, hedge, count_ };

// meridian_hedges_total's result: a hedge went out; it answered first; an attempt (the hedge
// or the one it raced) was cancelled because the other answered first.
enum class hedge_event { sent, won, cancelled, count_ };

namespace detail {
struct series_plan;  // the series of every family, their labels, and which children feed each
}

// Single writer (the owning worker): a relaxed load and store instead of fetch_add keeps locked
// instructions off the hot path, while the scraper still reads whole, never torn, values.
class counter {
 public:
  void inc(std::uint64_t n = 1) noexcept {
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  std::uint64_t value() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> v_{0};
};

// Single writer, like counter. A worker's share may go negative only if another worker undid
// what it added, which never happens: a request lives on the worker that accepted it.
class gauge {
 public:
  void add(std::int64_t n = 1) noexcept {
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void sub(std::int64_t n = 1) noexcept { add(-n); }
  void set(std::int64_t v) noexcept { v_.store(v, std::memory_order_relaxed); }
  std::int64_t value() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::int64_t> v_{0};
};

// A measured value (seconds, a ratio), single writer; NaN until first set, and left out of the
// exposition while it is.
class value {
 public:
  void set(double v) noexcept { v_.store(v, std::memory_order_relaxed); }
  double get() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> v_{std::numeric_limits<double>::quiet_NaN()};
};

// Latency histogram with the fixed buckets below, single writer. Buckets are stored
// non-cumulative and the count is their sum, so a scrape never sees _count differ from the
// +Inf bucket.
class histogram {
 public:
  // Inclusive upper bounds in seconds: gateway overhead at the bottom, fine steps where
  // time-to-first-token and short generations fall (0.1 s .. 10 s), long generations up to the
  // 300 s upstream timeout at the top. A +Inf bucket follows.
  static constexpr std::array<double, 29> bounds{
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
      0.15,   0.2,     0.3,    0.4,   0.5,    0.75,  1,    1.5,   2,    3,
      4,      5,       7.5,    10,    15,     30,    60,   120,   300};
  static constexpr std::size_t buckets = bounds.size() + 1;  // the last one is +Inf

  void observe(double seconds) noexcept {
    if (std::isnan(seconds)) return;  // never a duration; it would poison _sum for good
    auto i = static_cast<std::size_t>(std::lower_bound(bounds.begin(), bounds.end(), seconds) -
                                      bounds.begin());
    counts_[i].inc();
    sum_.store(sum_.load(std::memory_order_relaxed) + seconds, std::memory_order_relaxed);
  }
  // Observations in bucket i alone, not cumulative; i == bounds.size() is the +Inf bucket.
  std::uint64_t bucket(std::size_t i) const noexcept { return counts_[i].value(); }
  std::uint64_t count() const noexcept {
    std::uint64_t n = 0;
    for (const auto& c : counts_) n += c.value();
    return n;
  }
  double sum() const noexcept { return sum_.load(std::memory_order_relaxed); }

 private:
  std::array<counter, buckets> counts_;
  std::atomic<double> sum_{0.0};
};

// The element types hold atomics and so never move: containers of them are sized once, at
// construction. Each is aligned to its own cache lines, so no heap neighbour shares them.
struct alignas(cache_line) route_metrics {
  std::array<counter, status_slots> requests;  // by status_index()
  histogram duration;
  counter cancelled_request;   // client left while sending / waiting
  counter cancelled_response;  // client left while a response streamed
  histogram ttft;              // request's first byte -> first SSE data event relayed
  histogram itl;               // gaps between SSE data events
  counter prompt_tokens;       // from the responses' `usage`
  counter completion_tokens;
};

struct alignas(cache_line) endpoint_metrics {
  counter requests;
  histogram first_byte;   // request sent -> the response's first body byte (a stream's first token)
  histogram first_token;  // streams only: request sent -> the first SSE data event
  gauge in_flight;
  std::array<counter, static_cast<int>(upstream_error::count_)> errors;
  std::array<counter, static_cast<int>(decision::count_)> decisions;
  counter ejections;  // outlier ejections by this worker
  // This worker's estimates (the exposition shows the highest over workers).
  value ttft;          // PeakEWMA time to first token (or response time), backend side
  value tpot;          // seconds per output token
  value decode_slope;  // seconds per output token that one more stream in the batch adds
  value score;         // expected time to first token for a new request: the picker's cost
  // Storage: the capacity and per-transfer rate estimates (bytes/s), and the bytes of transfers
  // in flight.
  value throughput;
  value flow_rate;
  value transfer_bytes;
};

// What the control thread's probes measure about one endpoint; it is their only writer.
struct alignas(cache_line) endpoint_signal_metrics {
  value rtt;          // the path's round trip: windowed minimum of probe times
  value probe_wait;   // the server's wait before answering a probe: PeakEWMA less the path
  value connect;      // last TCP connect time of a probe
  value handshake;    // and its TLS handshake, where the cluster speaks TLS
  value queue_depth;  // scraped requests waiting
  value running;      // scraped requests running
  value kv_usage;     // scraped KV-cache use, 0..1
  gauge healthy;      // probe verdict: 1 or 0
  counter probe_failures;
  counter scrape_failures;
};

// Prefix affinity's picks: look-ups (some endpoint held a leading block of the prompt, or
// none), the share of the prompt the chosen endpoint was credited with, in tenths, and picks
// where the endpoint holding most of it lost: over its load bound, or on cost.
struct prefix_metrics {
  static constexpr std::size_t tenths = 11;  // <= 0, <= 0.1, ..., <= 1.0
  counter hits, misses;
  std::array<counter, tenths> matched;  // non-cumulative
  std::atomic<double> matched_sum{0};
  counter spill_load, spill_cost;

  void observe(bool indexed, double matched_ratio, int spill) noexcept {
    (indexed ? hits : misses).inc();
    auto i = static_cast<std::size_t>(std::ceil(std::clamp(matched_ratio, 0.0, 1.0) * 10 - 1e-9));
    matched[i].inc();
    matched_sum.store(matched_sum.load(std::memory_order_relaxed) + matched_ratio,
                      std::memory_order_relaxed);
    if (spill == 1) spill_load.inc();
    if (spill == 2) spill_cost.inc();
  }
};

struct alignas(cache_line) cluster_metrics {
  histogram connect_duration;  // TCP
  histogram tls_handshake;     // after it, where the cluster speaks TLS
  std::array<counter, 2> tls_handshakes;  // [0] full, [1] resumed
  histogram first_byte;  // request sent -> response head
  counter connections_opened;
  counter connections_reused;
  prefix_metrics prefix;
  std::array<counter, static_cast<int>(retry_reason::count_)> retries;
  counter retry_budget_exhausted;
  std::array<counter, static_cast<int>(hedge_event::count_)> hedges;
  counter hedge_budget_exhausted;
  std::array<counter, 2> streams_interrupted;  // by interruption
  std::array<counter, 2> resumes;              // streams continued elsewhere: [0] ok, [1] failed
  std::array<counter, 2> object_resumes;       // object GETs continued on another replica, alike
  std::array<counter, 2> bytes;  // of the cluster's requests: [0] from, [1] to clients
  counter stripes;               // GETs served by striping
  std::array<counter, 3> parts;  // their part fetches: [0] ok, [1] reissued, [2] failed
  std::array<counter, static_cast<int>(shed_reason::count_)> shed;
  gauge pending;  // requests waiting for admission
};

// One endpoint's series: a block per worker (each written by its worker alone) and the probes'
// block (written by the control thread). Made by the registry when an endpoint joins a cluster,
// held by every topology that lists it (so a request still in flight on an endpoint that left
// writes somewhere valid), exported while it is in the registry's current set.
class endpoint_series {
 public:
  endpoint_series(std::size_t cluster, std::string address, unsigned workers)
      : cluster_(cluster),
        address_(std::move(address)),
        workers_(std::make_unique<endpoint_metrics[]>(workers ? workers : 1)),
        n_(workers ? workers : 1) {}
  endpoint_series(const endpoint_series&) = delete;
  endpoint_series& operator=(const endpoint_series&) = delete;

  endpoint_metrics& worker(unsigned i) { return workers_[i]; }
  const endpoint_metrics& worker(unsigned i) const { return workers_[i]; }
  unsigned workers() const { return n_; }
  endpoint_signal_metrics& signals() { return signals_; }
  const endpoint_signal_metrics& signals() const { return signals_; }
  std::size_t cluster() const { return cluster_; }
  const std::string& address() const { return address_; }  // the `endpoint` label
  // Sums over workers (admin JSON). Any thread.
  std::int64_t in_flight() const;
  std::uint64_t requests() const;

 private:
  std::size_t cluster_;
  std::string address_;
  std::unique_ptr<endpoint_metrics[]> workers_;
  unsigned n_;
  endpoint_signal_metrics signals_;
};
using endpoint_set = std::vector<std::vector<std::shared_ptr<endpoint_series>>>;  // per cluster

// Everything one worker writes. Only that worker may call the mutating members of what these
// accessors return; any thread may read.
class alignas(cache_line) worker_metrics {
 public:
  worker_metrics(const layout& l, unsigned index);
  worker_metrics(const worker_metrics&) = delete;
  worker_metrics& operator=(const worker_metrics&) = delete;

  route_metrics& route(std::size_t i) { return routes_[i]; }
  const route_metrics& route(std::size_t i) const { return routes_[i]; }
  route_metrics& unrouted() { return unrouted_; }
  const route_metrics& unrouted() const { return unrouted_; }
  cluster_metrics& cluster(std::size_t i) { return clusters_[i]; }
  const cluster_metrics& cluster(std::size_t i) const { return clusters_[i]; }
  gauge& active_connections() { return active_connections_; }
  const gauge& active_connections() const { return active_connections_; }
  counter& accepted_connections() { return accepted_connections_; }
  const counter& accepted_connections() const { return accepted_connections_; }
  counter& bytes_in() { return bytes_in_; }
  const counter& bytes_in() const { return bytes_in_; }
  counter& bytes_out() { return bytes_out_; }
  const counter& bytes_out() const { return bytes_out_; }
  counter& rejected(reject_reason r) { return rejected_[static_cast<int>(r)]; }
  const counter& rejected(reject_reason r) const { return rejected_[static_cast<int>(r)]; }
  // HTTP/2: connections, streams, the client's resets, what the gateway ended and why.
  counter& h2_connections() { return h2_connections_; }
  const counter& h2_connections() const { return h2_connections_; }
  counter& h2_streams() { return h2_streams_; }
  const counter& h2_streams() const { return h2_streams_; }
  counter& h2_client_resets() { return h2_client_resets_; }
  const counter& h2_client_resets() const { return h2_client_resets_; }
  counter& h2_goaway(h2_reason r) { return h2_goaway_[static_cast<int>(r)]; }
  const counter& h2_goaway(h2_reason r) const { return h2_goaway_[static_cast<int>(r)]; }
  counter& h2_reset(h2_reason r) { return h2_reset_[static_cast<int>(r)]; }
  const counter& h2_reset(h2_reason r) const { return h2_reset_[static_cast<int>(r)]; }
  // Which block of every endpoint_series this worker writes.
  unsigned index() const { return index_; }

 private:
  unsigned index_;
  counter h2_connections_, h2_streams_, h2_client_resets_;
  std::array<counter, static_cast<int>(h2_reason::count_)> h2_goaway_, h2_reset_;
  gauge active_connections_;
  counter accepted_connections_;
  counter bytes_in_;
  counter bytes_out_;
  std::array<counter, static_cast<int>(reject_reason::count_)> rejected_;
  route_metrics unrouted_;
  std::vector<route_metrics> routes_;
  std::vector<cluster_metrics> clusters_;
};

class registry {
 public:
  // Throws std::invalid_argument when the layout's per-route or per-cluster lists disagree.
  registry(const layout& l, unsigned workers);
  ~registry();
  registry(const registry&) = delete;
  registry& operator=(const registry&) = delete;

  worker_metrics& worker(unsigned i) { return *workers_[i]; }
  unsigned workers() const { return static_cast<unsigned>(workers_.size()); }

  // The series of endpoint `address` of cluster `cluster`: the one still alive for that pair
  // (its counters go on), or a new one. Not exported until set_endpoints() lists it. Any thread.
  std::shared_ptr<endpoint_series> endpoint(std::size_t cluster, const std::string& address);
  // The endpoints exported from now on, per cluster in topology order (a reload or DNS change
  // publishes a new set; series left out stop appearing). Any thread.
  void set_endpoints(endpoint_set eps);
  endpoint_set endpoints() const;
  // The probes' block of the e-th exported endpoint of a cluster.
  endpoint_signal_metrics& signals(std::size_t cluster, std::size_t endpoint) {
    return endpoints()[cluster][endpoint]->signals();
  }

  // Written by the control thread.
  void set_draining(bool on) { draining_.store(on, std::memory_order_relaxed); }
  void count_reload(bool ok) { (ok ? reloads_ok_ : reloads_failed_).inc(); }
  void set_io_backend(std::string_view backend);
  // The version meridian_build_info reports (before serving).
  void set_version(std::string_view version) { version_ = version; }

  // Families another module keeps (the TLS listeners'), appended to every scrape as Prometheus
  // text. Added before serving.
  void add_text_source(std::function<std::string()> source) {
    text_sources_.push_back(std::move(source));
  }

  // Prometheus text exposition format 0.0.4, every family summed over workers. Any thread.
  std::string serialize() const;

  // Sums over workers of the e-th exported endpoint of a cluster. Any thread.
  std::int64_t endpoint_in_flight(std::size_t cluster, std::size_t endpoint) const {
    return endpoints()[cluster][endpoint]->in_flight();
  }
  std::uint64_t endpoint_requests(std::size_t cluster, std::size_t endpoint) const {
    return endpoints()[cluster][endpoint]->requests();
  }

 private:
  std::unique_ptr<const detail::series_plan> plan_;
  std::vector<std::unique_ptr<worker_metrics>> workers_;
  mutable std::mutex endpoints_mutex_;
  endpoint_set exported_;
  std::map<std::pair<std::size_t, std::string>, std::weak_ptr<endpoint_series>> alive_;
  std::atomic<bool> draining_{false};
  counter reloads_ok_, reloads_failed_;
  mutable std::mutex io_backend_mutex_;
  std::string io_backend_;  // empty until set: the info family is left out
  std::string version_;     // likewise, for meridian_build_info
  std::vector<std::function<std::string()>> text_sources_;
};

}  // namespace meridian::metrics
