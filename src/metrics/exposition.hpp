// Building the Prometheus exposition out of the workers' metrics: the helpers the families'
// collectors share. Internal to src/metrics.
#pragma once

#include <prometheus/client_metric.h>
#include <prometheus/metric_family.h>
#include <prometheus/metric_type.h>

#include <algorithm>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "meridian/metrics/metrics.hpp"

namespace meridian::metrics {
namespace detail {
using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using labels = std::vector<ClientMetric::Label>;

inline constexpr const char* code_classes[] = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};
// The `code` and `code_class` labels of a status_index() slot.
inline std::pair<std::string, const char*> status_labels(std::size_t slot) {
  if (slot == 0) return {"none", "none"};
  if (slot <= known_status_codes.size()) {
    int code = known_status_codes[slot - 1];
    return {std::to_string(code), code_classes[code / 100]};
  }
  return {"other", code_classes[slot - known_status_codes.size()]};
}
inline constexpr const char* reject_names[] = {"bad_request",    "head_too_large", "body_too_large",
                                               "header_timeout", "body_timeout",   "overloaded",
                                               "no_route",       "unauthenticated", "forbidden",
                                               "rate_limited"};
inline constexpr const char* upstream_error_names[] = {"connect", "reset", "timeout", "protocol"};
static_assert(std::size(reject_names) == static_cast<std::size_t>(reject_reason::count_));
static_assert(std::size(upstream_error_names) == static_cast<std::size_t>(upstream_error::count_));

// Children with equal labels are one series, as prometheus-cpp's Family::Add made them: two
// routes may share a name (a route's name defaults to its cluster's), and a duplicate series
// would make the whole exposition invalid.
template <class Key>
class series_set {
 public:
  std::size_t slot(const Key& key) {
    auto [it, added] = index_.try_emplace(key, keys_.size());
    if (added) keys_.push_back(key);
    return it->second;
  }
  const std::vector<Key>& keys() const { return keys_; }

 private:
  std::map<Key, std::size_t> index_;
  std::vector<Key> keys_;
};

struct histogram_sum {
  std::array<std::uint64_t, histogram::buckets> counts{};
  double sum = 0;

  void add(const histogram& h) {
    for (std::size_t i = 0; i < counts.size(); ++i) counts[i] += h.bucket(i);
    sum += h.sum();
  }
};

// Labels sorted by name, as prometheus-cpp printed them (and as dashboards and tests match them).
inline ClientMetric child(labels l) {
  std::sort(l.begin(), l.end());
  ClientMetric m;
  m.label = std::move(l);
  return m;
}

inline void add_value(MetricFamily& f, labels l, double v) {
  auto m = child(std::move(l));
  if (f.type == MetricType::Counter)
    m.counter.value = v;
  else
    m.gauge.value = v;
  f.metric.push_back(std::move(m));
}

inline void add_histogram(MetricFamily& f, labels l, const histogram_sum& h) {
  auto m = child(std::move(l));
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < histogram::bounds.size(); ++i) {
    cumulative += h.counts[i];
    m.histogram.bucket.push_back({cumulative, histogram::bounds[i]});
  }
  cumulative += h.counts.back();
  m.histogram.bucket.push_back({cumulative, std::numeric_limits<double>::infinity()});
  m.histogram.sample_count = cumulative;
  m.histogram.sample_sum = h.sum;
  f.metric.push_back(std::move(m));
}

inline MetricFamily family(const char* name, const char* help, MetricType type) {
  return MetricFamily{name, help, type, {}};
}

struct series_plan {
  std::size_t routes = 0;  // route index `routes` stands for unrouted()
  // Per route (unrouted last): its series in requests_total, and in the families labelled by
  // route alone (duration, cancelled).
  std::vector<std::size_t> route_cluster_slot, route_slot;
  series_set<std::pair<std::string, std::string>> route_clusters;  // (route, cluster)
  series_set<std::string> route_names;
  std::vector<std::string> clusters;
  std::vector<bool> tls_clusters;
};

using workers_t = std::vector<std::unique_ptr<worker_metrics>>;

// Families by cluster beyond connections: prefix affinity, retries, interrupted streams.
void collect_prefix(const series_plan& p, const workers_t& workers,
                    std::vector<prometheus::MetricFamily>& out);
void collect_resilience(const series_plan& p, const workers_t& workers,
                        std::vector<prometheus::MetricFamily>& out);
// process_* (CPU, memory, descriptors, start time, from /proc) and meridian_build_info.
void collect_process(std::string_view version, std::vector<prometheus::MetricFamily>& out);
void collect_http2(const workers_t& workers, std::vector<prometheus::MetricFamily>& out);
}  // namespace detail

}  // namespace meridian::metrics
