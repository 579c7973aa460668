// Every Prometheus family Meridian exports, declared in one place, with the children the hot
// path uses cached at startup. Created on the main thread before workers start; afterwards the
// cached children are updated by workers (lock-free atomics) and read by the admin listener.
#pragma once

#include <array>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace prometheus {
class Registry;
class Counter;
class Gauge;
class Histogram;
}  // namespace prometheus

namespace meridian::metrics {

// The bounded label sets are known at startup: routes, clusters, endpoints, listeners.
struct layout {
  std::vector<std::string> routes;
  std::vector<std::string> route_clusters;  // cluster of each route
  std::vector<std::string> clusters;
  std::vector<std::vector<std::string>> endpoints;  // per cluster, "host:port"
  std::vector<std::string> listeners;
};

enum class reject_reason {
  bad_request,
  head_too_large,
  body_too_large,
  header_timeout,
  body_timeout,
  overloaded,
  no_route,
  count_
};

enum class upstream_error { connect, reset, timeout, protocol, count_ };

struct route_metrics {
  std::array<prometheus::Counter*, 6> requests{};  // by code class: 1xx..5xx, [0] = no response
  prometheus::Histogram* duration = nullptr;
  prometheus::Counter* cancelled_request = nullptr;   // client left while sending / waiting
  prometheus::Counter* cancelled_response = nullptr;  // client left while a response streamed
};

struct endpoint_metrics {
  prometheus::Counter* requests = nullptr;
  prometheus::Gauge* in_flight = nullptr;
  std::array<prometheus::Counter*, static_cast<int>(upstream_error::count_)> errors{};
};

struct cluster_metrics {
  prometheus::Histogram* connect_duration = nullptr;
  prometheus::Histogram* first_byte = nullptr;  // request sent -> response head
  prometheus::Counter* connections_opened = nullptr;
  prometheus::Counter* connections_reused = nullptr;
  std::vector<endpoint_metrics> endpoints;
};

class registry {
 public:
  explicit registry(const layout& l);
  ~registry();
  registry(const registry&) = delete;
  registry& operator=(const registry&) = delete;

  route_metrics& route(std::size_t i) { return routes_[i]; }
  route_metrics& unrouted() { return unrouted_; }
  cluster_metrics& cluster(std::size_t i) { return clusters_[i]; }
  prometheus::Gauge& active_connections() { return *active_connections_; }
  prometheus::Counter& accepted_connections() { return *accepted_connections_; }
  prometheus::Counter& bytes_in() { return *bytes_in_; }
  prometheus::Counter& bytes_out() { return *bytes_out_; }
  prometheus::Counter& rejected(reject_reason r) { return *rejected_[static_cast<int>(r)]; }
  prometheus::Gauge& draining() { return *draining_; }
  void set_io_backend(std::string_view backend);
  void set_workers(unsigned n);

  // Prometheus text exposition format 0.0.4.
  std::string serialize() const;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::vector<route_metrics> routes_;
  route_metrics unrouted_;
  std::vector<cluster_metrics> clusters_;
  prometheus::Gauge* active_connections_ = nullptr;
  prometheus::Counter* accepted_connections_ = nullptr;
  prometheus::Counter* bytes_in_ = nullptr;
  prometheus::Counter* bytes_out_ = nullptr;
  std::array<prometheus::Counter*, static_cast<int>(reject_reason::count_)> rejected_{};
  prometheus::Gauge* draining_ = nullptr;
  prometheus::Gauge* workers_ = nullptr;
};

// Index into route_metrics::requests for an HTTP status (0 = no response was sent).
inline std::size_t code_class_index(int status) {
  return status >= 100 && status < 600 ? static_cast<std::size_t>(status / 100) : 0;
}

}  // namespace meridian::metrics
