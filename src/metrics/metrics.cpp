#include "meridian/metrics/metrics.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <sstream>

namespace meridian::metrics {
namespace {
const prometheus::Histogram::BucketBoundaries& latency_buckets() {
  // 100 µs .. 60 s: gateway overhead at the bottom, LLM generations at the top.
  static const prometheus::Histogram::BucketBoundaries b{
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
      0.1,    0.25,    0.5,    1,     2.5,    5,     10,   30,    60};
  return b;
}
constexpr const char* code_classes[] = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};
constexpr const char* reject_names[] = {"bad_request",    "head_too_large", "body_too_large",
                                        "header_timeout", "body_timeout",   "overloaded",
                                        "no_route"};
constexpr const char* upstream_error_names[] = {"connect", "reset", "timeout", "protocol"};
}  // namespace

registry::registry(const layout& l) : registry_(std::make_shared<prometheus::Registry>()) {
  auto& reg = *registry_;
  auto& requests = prometheus::BuildCounter()
                       .Name("meridian_requests_total")
                       .Help("Requests answered, by route, cluster and status class")
                       .Register(reg);
  auto& duration = prometheus::BuildHistogram()
                       .Name("meridian_request_duration_seconds")
                       .Help("Time from a request's first byte to the last byte of its response")
                       .Register(reg);
  auto& cancelled = prometheus::BuildCounter()
                        .Name("meridian_cancelled_requests_total")
                        .Help("Requests whose client went away before the response finished")
                        .Register(reg);
  auto make_route = [&](const std::string& route, const std::string& cluster) {
    route_metrics rm;
    for (std::size_t c = 0; c < rm.requests.size(); ++c)
      rm.requests[c] =
          &requests.Add({{"route", route}, {"cluster", cluster}, {"code_class", code_classes[c]}});
    rm.duration = &duration.Add({{"route", route}}, latency_buckets());
    rm.cancelled_request = &cancelled.Add({{"route", route}, {"phase", "request"}});
    rm.cancelled_response = &cancelled.Add({{"route", route}, {"phase", "response"}});
    return rm;
  };
  for (std::size_t i = 0; i < l.routes.size(); ++i)
    routes_.push_back(make_route(l.routes[i], l.route_clusters[i]));
  unrouted_ = make_route("", "");

  auto& connect = prometheus::BuildHistogram()
                      .Name("meridian_upstream_connect_duration_seconds")
                      .Help("Time to open a TCP connection to an endpoint")
                      .Register(reg);
  auto& first_byte = prometheus::BuildHistogram()
                         .Name("meridian_upstream_response_head_seconds")
                         .Help("Time from the request sent upstream to its response head")
                         .Register(reg);
  auto& opened = prometheus::BuildCounter()
                     .Name("meridian_upstream_connections_opened_total")
                     .Help("Upstream connections opened")
                     .Register(reg);
  auto& reused = prometheus::BuildCounter()
                     .Name("meridian_upstream_connections_reused_total")
                     .Help("Requests sent on a pooled keep-alive upstream connection")
                     .Register(reg);
  auto& up_requests = prometheus::BuildCounter()
                          .Name("meridian_upstream_requests_total")
                          .Help("Requests sent to an endpoint")
                          .Register(reg);
  auto& up_in_flight = prometheus::BuildGauge()
                           .Name("meridian_upstream_in_flight")
                           .Help("Requests in flight to an endpoint, all workers")
                           .Register(reg);
  auto& up_errors = prometheus::BuildCounter()
                        .Name("meridian_upstream_errors_total")
                        .Help("Upstream failures by kind")
                        .Register(reg);
  for (std::size_t c = 0; c < l.clusters.size(); ++c) {
    cluster_metrics cm;
    const auto& cl = l.clusters[c];
    cm.connect_duration = &connect.Add({{"cluster", cl}}, latency_buckets());
    cm.first_byte = &first_byte.Add({{"cluster", cl}}, latency_buckets());
    cm.connections_opened = &opened.Add({{"cluster", cl}});
    cm.connections_reused = &reused.Add({{"cluster", cl}});
    for (const auto& ep : l.endpoints[c]) {
      endpoint_metrics em;
      em.requests = &up_requests.Add({{"cluster", cl}, {"endpoint", ep}});
      em.in_flight = &up_in_flight.Add({{"cluster", cl}, {"endpoint", ep}});
      for (std::size_t k = 0; k < em.errors.size(); ++k)
        em.errors[k] =
            &up_errors.Add({{"cluster", cl}, {"endpoint", ep}, {"kind", upstream_error_names[k]}});
      cm.endpoints.push_back(em);
    }
    clusters_.push_back(std::move(cm));
  }

  active_connections_ = &prometheus::BuildGauge()
                             .Name("meridian_downstream_connections_active")
                             .Help("Open client connections")
                             .Register(reg)
                             .Add({});
  accepted_connections_ = &prometheus::BuildCounter()
                               .Name("meridian_downstream_connections_total")
                               .Help("Client connections accepted")
                               .Register(reg)
                               .Add({});
  auto& bytes = prometheus::BuildCounter()
                    .Name("meridian_downstream_bytes_total")
                    .Help("Bytes received from and sent to clients")
                    .Register(reg);
  bytes_in_ = &bytes.Add({{"direction", "in"}});
  bytes_out_ = &bytes.Add({{"direction", "out"}});
  auto& rejected = prometheus::BuildCounter()
                       .Name("meridian_downstream_rejected_total")
                       .Help("Requests or connections refused by the gateway, by reason")
                       .Register(reg);
  for (std::size_t r = 0; r < rejected_.size(); ++r)
    rejected_[r] = &rejected.Add({{"reason", reject_names[r]}});
  draining_ = &prometheus::BuildGauge()
                   .Name("meridian_draining")
                   .Help("1 while the gateway drains before shutdown")
                   .Register(reg)
                   .Add({});
  workers_ = &prometheus::BuildGauge()
                  .Name("meridian_workers")
                  .Help("Worker threads serving the data path")
                  .Register(reg)
                  .Add({});
}

registry::~registry() = default;

void registry::set_io_backend(std::string_view backend) {
  prometheus::BuildGauge()
      .Name("meridian_io_backend_info")
      .Help("The I/O reactor the data path runs on")
      .Register(*registry_)
      .Add({{"backend", std::string(backend)}})
      .Set(1);
}

void registry::set_workers(unsigned n) {
  workers_->Set(n);
}

std::string registry::serialize() const {
  prometheus::TextSerializer s;
  return s.Serialize(registry_->Collect());
}

}  // namespace meridian::metrics
