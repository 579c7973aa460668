#include "meridian/metrics/metrics.hpp"

#include <prometheus/text_serializer.h>

#include <algorithm>
#include <iterator>
#include <limits>
#include <map>
#include <stdexcept>
#include <utility>

#include "metrics/exposition.hpp"

namespace meridian::metrics {
using namespace detail;
using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

worker_metrics::worker_metrics(const layout& l, unsigned index)
    : index_(index), routes_(l.routes.size()), clusters_(l.clusters.size()) {}

std::int64_t endpoint_series::in_flight() const {
  std::int64_t n = 0;
  for (unsigned i = 0; i < n_; ++i) n += workers_[i].in_flight.value();
  return n;
}

std::uint64_t endpoint_series::requests() const {
  std::uint64_t n = 0;
  for (unsigned i = 0; i < n_; ++i) n += workers_[i].requests.value();
  return n;
}

registry::registry(const layout& l, unsigned workers) {
  if (l.route_clusters.size() != l.routes.size())
    throw std::invalid_argument("metrics layout: routes and route_clusters differ in length");
  if (l.endpoints.size() != l.clusters.size())
    throw std::invalid_argument("metrics layout: clusters and endpoints differ in length");
  auto p = std::make_unique<detail::series_plan>();
  p->routes = l.routes.size();
  const std::string none;  // unrouted requests are labelled route="" cluster=""
  for (std::size_t r = 0; r <= p->routes; ++r) {
    const auto& name = r < p->routes ? l.routes[r] : none;
    const auto& cluster = r < p->routes ? l.route_clusters[r] : none;
    p->route_cluster_slot.push_back(p->route_clusters.slot({name, cluster}));
    p->route_slot.push_back(p->route_names.slot(name));
  }
  p->clusters = l.clusters;
  p->tls_clusters = l.tls_clusters;
  plan_ = std::move(p);
  workers_.reserve(workers);
  for (unsigned i = 0; i < workers; ++i) workers_.push_back(std::make_unique<worker_metrics>(l, i));
  endpoint_set first(l.clusters.size());
  for (std::size_t c = 0; c < l.clusters.size(); ++c)
    for (const auto& address : l.endpoints[c]) first[c].push_back(endpoint(c, address));
  set_endpoints(std::move(first));
}

registry::~registry() = default;

void registry::set_io_backend(std::string_view backend) {
  std::lock_guard lock(io_backend_mutex_);
  io_backend_ = backend;
}

std::shared_ptr<endpoint_series> registry::endpoint(std::size_t cluster,
                                                    const std::string& address) {
  std::lock_guard lock(endpoints_mutex_);
  auto& slot = alive_[{cluster, address}];
  if (auto s = slot.lock()) return s;
  auto s = std::make_shared<endpoint_series>(cluster, address, workers());
  slot = s;
  return s;
}

void registry::set_endpoints(endpoint_set eps) {
  eps.resize(plan_->clusters.size());
  // One series per label set: an endpoint listed twice is exported once.
  for (auto& list : eps) {
    std::vector<std::shared_ptr<endpoint_series>> unique;
    for (auto& s : list)
      if (std::find(unique.begin(), unique.end(), s) == unique.end()) unique.push_back(s);
    list = std::move(unique);
  }
  std::lock_guard lock(endpoints_mutex_);
  exported_ = std::move(eps);
  std::erase_if(alive_, [](const auto& kv) { return kv.second.expired(); });
}

endpoint_set registry::endpoints() const {
  std::lock_guard lock(endpoints_mutex_);
  return exported_;
}

namespace {

// Requests by (route, cluster, code class); duration and cancellations by route.
void collect_routes(const detail::series_plan& p, const workers_t& workers,
                    std::vector<MetricFamily>& out) {
  std::vector<std::array<std::uint64_t, status_slots>> requests(p.route_clusters.keys().size());
  std::vector<histogram_sum> duration(p.route_names.keys().size());
  std::vector<std::array<std::uint64_t, 2>> cancelled(p.route_names.keys().size());
  std::vector<histogram_sum> ttft(p.route_clusters.keys().size()), itl(ttft.size());
  std::vector<std::array<std::uint64_t, 2>> tokens(p.route_clusters.keys().size());
  for (const auto& w : workers) {
    for (std::size_t r = 0; r <= p.routes; ++r) {
      const auto& rm = r < p.routes ? w->route(r) : w->unrouted();
      for (std::size_t c = 0; c < rm.requests.size(); ++c)
        requests[p.route_cluster_slot[r]][c] += rm.requests[c].value();
      duration[p.route_slot[r]].add(rm.duration);
      cancelled[p.route_slot[r]][0] += rm.cancelled_request.value();
      cancelled[p.route_slot[r]][1] += rm.cancelled_response.value();
      auto rc = p.route_cluster_slot[r];
      ttft[rc].add(rm.ttft);
      itl[rc].add(rm.itl);
      tokens[rc][0] += rm.prompt_tokens.value();
      tokens[rc][1] += rm.completion_tokens.value();
    }
  }
  auto req = family("meridian_requests_total",
                    "Requests answered, by route, cluster and status (code: none when no "
                    "response was sent, other for a status outside the known set)",
                    MetricType::Counter);
  for (std::size_t s = 0; s < requests.size(); ++s) {
    const auto& [route, cluster] = p.route_clusters.keys()[s];
    for (std::size_t c = 0; c < requests[s].size(); ++c) {
      if (requests[s][c] == 0) continue;  // a series appears with its first request
      auto [code, code_class] = status_labels(c);
      add_value(
          req, {{"route", route}, {"cluster", cluster}, {"code", code}, {"code_class", code_class}},
          static_cast<double>(requests[s][c]));
    }
  }
  auto dur = family("meridian_request_duration_seconds",
                    "Time from a request's first byte to the last byte of its response",
                    MetricType::Histogram);
  auto can =
      family("meridian_cancelled_requests_total",
             "Requests whose client went away before the response finished", MetricType::Counter);
  for (std::size_t s = 0; s < duration.size(); ++s) {
    const auto& route = p.route_names.keys()[s];
    add_histogram(dur, {{"route", route}}, duration[s]);
    add_value(can, {{"route", route}, {"phase", "request"}}, static_cast<double>(cancelled[s][0]));
    add_value(can, {{"route", route}, {"phase", "response"}}, static_cast<double>(cancelled[s][1]));
  }
  auto tt = family("meridian_time_to_first_token_seconds",
                   "Time from a request's first byte to the first SSE data event of its stream",
                   MetricType::Histogram);
  auto it = family("meridian_inter_token_latency_seconds",
                   "Gaps between consecutive SSE data events of a stream", MetricType::Histogram);
  auto tok = family("meridian_tokens_total",
                    "Tokens reported in the responses' usage, by route, cluster and kind",
                    MetricType::Counter);
  for (std::size_t s = 0; s < ttft.size(); ++s) {
    const auto& [route, cluster] = p.route_clusters.keys()[s];
    if (route.empty() && cluster.empty()) continue;  // nothing unrouted streams
    add_histogram(tt, {{"route", route}, {"cluster", cluster}}, ttft[s]);
    add_histogram(it, {{"route", route}, {"cluster", cluster}}, itl[s]);
    add_value(tok, {{"route", route}, {"cluster", cluster}, {"kind", "prompt"}},
              static_cast<double>(tokens[s][0]));
    add_value(tok, {{"route", route}, {"cluster", cluster}, {"kind", "completion"}},
              static_cast<double>(tokens[s][1]));
  }
  for (auto* f : {&req, &dur, &can, &tt, &it, &tok}) out.push_back(std::move(*f));
}

// Prefix affinity by cluster.
// Connection timings and counts by cluster.
void collect_clusters(const detail::series_plan& p, const workers_t& workers,
                      std::vector<MetricFamily>& out) {
  const std::size_t n = p.clusters.size();
  std::vector<histogram_sum> connect(n), first_byte(n), handshake(n);
  std::vector<std::uint64_t> opened(n), reused(n), full(n), resumed(n);
  for (const auto& w : workers) {
    for (std::size_t c = 0; c < n; ++c) {
      const auto& cm = w->cluster(c);
      connect[c].add(cm.connect_duration);
      handshake[c].add(cm.tls_handshake);
      full[c] += cm.tls_handshakes[0].value();
      resumed[c] += cm.tls_handshakes[1].value();
      first_byte[c].add(cm.first_byte);
      opened[c] += cm.connections_opened.value();
      reused[c] += cm.connections_reused.value();
    }
  }
  auto con = family("meridian_upstream_connect_duration_seconds",
                    "Time to open a TCP connection to an endpoint", MetricType::Histogram);
  auto hs = family("meridian_upstream_tls_handshake_duration_seconds",
                   "Time from an upstream TCP connect to the end of its TLS handshake",
                   MetricType::Histogram);
  auto hst = family("meridian_upstream_tls_handshakes_total",
                    "Upstream TLS handshakes completed, full or resuming a session",
                    MetricType::Counter);
  auto head =
      family("meridian_upstream_response_head_seconds",
             "Time from the request sent upstream to its response head", MetricType::Histogram);
  auto ope = family("meridian_upstream_connections_opened_total", "Upstream connections opened",
                    MetricType::Counter);
  auto reu =
      family("meridian_upstream_connections_reused_total",
             "Requests sent on a pooled keep-alive upstream connection", MetricType::Counter);
  for (std::size_t c = 0; c < n; ++c) {
    const auto& cl = p.clusters[c];
    add_histogram(con, {{"cluster", cl}}, connect[c]);
    // Where the config speaks TLS, or a reload turned it on since.
    if ((c < p.tls_clusters.size() && p.tls_clusters[c]) || full[c] + resumed[c] > 0) {
      add_histogram(hs, {{"cluster", cl}}, handshake[c]);
      add_value(hst, {{"cluster", cl}, {"resumed", "false"}}, static_cast<double>(full[c]));
      add_value(hst, {{"cluster", cl}, {"resumed", "true"}}, static_cast<double>(resumed[c]));
    }
    add_histogram(head, {{"cluster", cl}}, first_byte[c]);
    add_value(ope, {{"cluster", cl}}, static_cast<double>(opened[c]));
    add_value(reu, {{"cluster", cl}}, static_cast<double>(reused[c]));
  }
  for (auto* f : {&con, &hs, &hst, &head, &ope, &reu}) out.push_back(std::move(*f));
  collect_prefix(p, workers, out);
  collect_resilience(p, workers, out);
}

// Requests, in flight, errors and first-byte latency by (cluster, endpoint).
void collect_endpoints(const detail::series_plan& p, const endpoint_set& eps,
                       std::vector<MetricFamily>& out) {
  constexpr auto kinds = static_cast<std::size_t>(upstream_error::count_);
  auto req = family("meridian_upstream_requests_total", "Requests sent to an endpoint",
                    MetricType::Counter);
  auto inf = family("meridian_endpoint_inflight",
                    "Requests in flight to an endpoint (counted from the pick), all workers",
                    MetricType::Gauge);
  auto err =
      family("meridian_upstream_errors_total", "Upstream failures by kind", MetricType::Counter);
  auto ej = family("meridian_endpoint_ejections_total",
                   "Outlier ejections of an endpoint (consecutive 5xx or connect failures), "
                   "summed over the workers that each eject on their own",
                   MetricType::Counter);
  auto ft = family("meridian_endpoint_time_to_first_token_seconds",
                   "Streams only: time from the request sent to an endpoint to the first SSE data "
                   "event of its answer (per-endpoint TTFT; the route's TTFT counts from the "
                   "client's first byte, retries included)",
                   MetricType::Histogram);
  auto fb = family("meridian_endpoint_first_byte_seconds",
                   "Time from the request sent to an endpoint to the first byte of its response "
                   "body (a stream's first token)",
                   MetricType::Histogram);
  for (std::size_t c = 0; c < eps.size(); ++c) {
    for (const auto& es : eps[c]) {
      std::uint64_t requests = 0, ejections = 0;
      std::int64_t in_flight = 0;
      std::array<std::uint64_t, kinds> errors{};
      histogram_sum first_byte, first_token;
      for (unsigned w = 0; w < es->workers(); ++w) {
        const auto& em = es->worker(w);
        requests += em.requests.value();
        ejections += em.ejections.value();
        in_flight += em.in_flight.value();
        for (std::size_t k = 0; k < kinds; ++k) errors[k] += em.errors[k].value();
        first_byte.add(em.first_byte);
        first_token.add(em.first_token);
      }
      labels l{{"cluster", p.clusters[c]}, {"endpoint", es->address()}};
      add_value(req, l, static_cast<double>(requests));
      add_value(ej, l, static_cast<double>(ejections));
      add_histogram(fb, l, first_byte);
      add_histogram(ft, l, first_token);
      add_value(inf, l, static_cast<double>(in_flight));
      for (std::size_t k = 0; k < kinds; ++k) {
        auto lk = l;
        lk.push_back({"kind", upstream_error_names[k]});
        add_value(err, std::move(lk), static_cast<double>(errors[k]));
      }
    }
  }
  for (auto* f : {&req, &inf, &err, &ej, &fb, &ft}) out.push_back(std::move(*f));
}

constexpr const char* decision_names[] = {"score", "round_robin", "least_request",
                                          "panic", "retry",       "hedge"};
static_assert(std::size(decision_names) == static_cast<std::size_t>(decision::count_));

// The routing inputs and outputs per endpoint: the probes' figures (one writer, the control
// thread), each worker's estimates (the highest shown: the cautious reading) and decisions.
void collect_signals(const detail::series_plan& p, const endpoint_set& eps,
                     std::vector<MetricFamily>& out) {
  constexpr auto reasons = static_cast<std::size_t>(decision::count_);
  auto fam = [](const char* name, const char* help, MetricType t = MetricType::Gauge) {
    return family(name, help, t);
  };
  auto rtt = fam("meridian_endpoint_rtt_seconds",
                 "The network path's round trip to an endpoint: the minimum probe time over the "
                 "recent window (a busy server sometimes answers at once, a long path never does)");
  auto wait = fam("meridian_endpoint_probe_wait_seconds",
                  "How long an endpoint's server waits before answering a probe: the smoothed "
                  "probe time (PeakEWMA) less the path's round trip");
  auto conn = fam("meridian_endpoint_connect_seconds",
                  "TCP connect time of an endpoint's last probe (to whatever ends TCP first)");
  auto hshake = fam("meridian_endpoint_tls_handshake_seconds",
                    "TLS handshake time of an endpoint's last probe, after its TCP connect "
                    "(clusters that speak TLS; a resumed session where the endpoint allows)");
  auto slope = fam("meridian_endpoint_decode_slope_seconds",
                   "What one more stream in an endpoint's batch adds to each output token's time "
                   "(learned from per-token times against batch size)");
  auto ttft = fam("meridian_endpoint_ttft_seconds",
                  "Estimated time to first token of an endpoint, backend side (PeakEWMA)");
  auto tpot = fam("meridian_endpoint_time_per_output_token_seconds",
                  "Estimated time per output token of an endpoint");
  auto queue = fam("meridian_endpoint_queue_depth", "Requests waiting, as the endpoint reports");
  auto running = fam("meridian_endpoint_running", "Requests running, as the endpoint reports");
  auto kv = fam("meridian_endpoint_kv_cache_usage_ratio", "KV-cache use the endpoint reports");
  auto score = fam("meridian_endpoint_score_seconds",
                   "The picker's cost of an endpoint for a new request: the expected time to "
                   "first token (latency-aware), or for storage to the last byte of an object "
                   "of unknown size (bandwidth-aware)");
  auto healthy = fam("meridian_endpoint_healthy", "1 when active probes find the endpoint healthy");
  auto pfail =
      fam("meridian_endpoint_probe_failures_total", "Failed health probes", MetricType::Counter);
  auto sfail = fam("meridian_endpoint_scrape_failures_total", "Failed load-metric scrapes",
                   MetricType::Counter);
  auto thr = fam("meridian_endpoint_throughput_bytes_per_second",
                 "Storage: the rate an endpoint delivers object bytes at over all its transfers "
                 "(a transfer's rate times the transfers sharing the endpoint, EWMA over "
                 "transfers of 256 KiB or more)");
  auto flow = fam("meridian_endpoint_flow_rate_bytes_per_second",
                  "Storage: the rate one transfer from an endpoint gets (EWMA of transfers that "
                  "ran alone, or the most a shared one got)");
  auto tb = fam("meridian_endpoint_transfer_bytes_in_flight",
                "Storage: bytes the transfers in flight to an endpoint are expected to move");
  auto dec = fam("meridian_routing_decisions_total",
                 "Requests sent to an endpoint, by why it was chosen", MetricType::Counter);
  auto maybe = [](MetricFamily& f, labels l, double v) {
    if (!std::isnan(v)) add_value(f, std::move(l), v);
  };
  for (std::size_t c = 0; c < eps.size(); ++c) {
    for (const auto& es : eps[c]) {
      labels l{{"cluster", p.clusters[c]}, {"endpoint", es->address()}};
      const auto& s = es->signals();
      maybe(rtt, l, s.rtt.get());
      maybe(wait, l, s.probe_wait.get());
      maybe(conn, l, s.connect.get());
      maybe(hshake, l, s.handshake.get());
      maybe(queue, l, s.queue_depth.get());
      maybe(running, l, s.running.get());
      maybe(kv, l, s.kv_usage.get());
      add_value(healthy, l, static_cast<double>(s.healthy.value()));
      add_value(pfail, l, static_cast<double>(s.probe_failures.value()));
      add_value(sfail, l, static_cast<double>(s.scrape_failures.value()));
      double t = std::numeric_limits<double>::quiet_NaN(), tp = t, sl = t, sc = t, th = t, fl = t,
             tbytes = t;
      std::array<std::uint64_t, reasons> d{};
      for (unsigned w = 0; w < es->workers(); ++w) {
        const auto& em = es->worker(w);
        auto hi = [](double& acc, double v) {
          if (!std::isnan(v) && (std::isnan(acc) || v > acc)) acc = v;
        };
        hi(t, em.ttft.get());
        hi(tp, em.tpot.get());
        hi(sl, em.decode_slope.get());
        hi(sc, em.score.get());
        hi(th, em.throughput.get());
        hi(fl, em.flow_rate.get());
        if (double v = em.transfer_bytes.get(); !std::isnan(v))
          tbytes = std::isnan(tbytes) ? v : tbytes + v;
        for (std::size_t r = 0; r < reasons; ++r) d[r] += em.decisions[r].value();
      }
      maybe(ttft, l, t);
      maybe(tpot, l, tp);
      maybe(slope, l, sl);
      maybe(score, l, sc);
      maybe(thr, l, th);
      maybe(flow, l, fl);
      maybe(tb, l, tbytes);
      for (std::size_t r = 0; r < reasons; ++r) {
        auto lr = l;
        lr.push_back({"reason", decision_names[r]});
        add_value(dec, std::move(lr), static_cast<double>(d[r]));
      }
    }
  }
  for (auto* f : {&rtt, &wait, &conn, &hshake, &ttft, &tpot, &slope, &queue, &running, &kv, &score, &thr,
                  &flow, &tb, &healthy, &pfail, &sfail, &dec})
    out.push_back(std::move(*f));
}

// Client connections, bytes and rejections.
void collect_downstream(const workers_t& workers, std::vector<MetricFamily>& out) {
  std::int64_t active = 0;
  std::uint64_t accepted = 0, bytes_in = 0, bytes_out = 0;
  std::array<std::uint64_t, static_cast<std::size_t>(reject_reason::count_)> rejected{};
  for (const auto& w : workers) {
    active += w->active_connections().value();
    accepted += w->accepted_connections().value();
    bytes_in += w->bytes_in().value();
    bytes_out += w->bytes_out().value();
    for (std::size_t r = 0; r < rejected.size(); ++r)
      rejected[r] += w->rejected(static_cast<reject_reason>(r)).value();
  }
  add_value(out.emplace_back(family("meridian_downstream_connections_active",
                                    "Open client connections", MetricType::Gauge)),
            {}, static_cast<double>(active));
  add_value(out.emplace_back(family("meridian_downstream_connections_total",
                                    "Client connections accepted", MetricType::Counter)),
            {}, static_cast<double>(accepted));
  auto bytes = family("meridian_downstream_bytes_total", "Bytes received from and sent to clients",
                      MetricType::Counter);
  add_value(bytes, {{"direction", "in"}}, static_cast<double>(bytes_in));
  add_value(bytes, {{"direction", "out"}}, static_cast<double>(bytes_out));
  auto rej =
      family("meridian_downstream_rejected_total",
             "Requests or connections refused by the gateway, by reason", MetricType::Counter);
  for (std::size_t r = 0; r < rejected.size(); ++r)
    add_value(rej, {{"reason", reject_names[r]}}, static_cast<double>(rejected[r]));
  for (auto* f : {&bytes, &rej}) out.push_back(std::move(*f));

  detail::collect_http2(workers, out);
}
}  // namespace


std::string registry::serialize() const {
  std::vector<MetricFamily> out;
  collect_routes(*plan_, workers_, out);
  collect_clusters(*plan_, workers_, out);
  auto eps = endpoints();
  collect_endpoints(*plan_, eps, out);
  collect_signals(*plan_, eps, out);
  collect_downstream(workers_, out);
  add_value(
      out.emplace_back(family("meridian_draining", "1 while the gateway drains before shutdown",
                              MetricType::Gauge)),
      {}, draining_.load(std::memory_order_relaxed) ? 1 : 0);
  auto& reloads = out.emplace_back(family("meridian_config_reloads_total",
                                          "Config reloads (SIGHUP, POST /admin/reload) by result",
                                          MetricType::Counter));
  add_value(reloads, {{"result", "success"}}, static_cast<double>(reloads_ok_.value()));
  add_value(reloads, {{"result", "failure"}}, static_cast<double>(reloads_failed_.value()));
  add_value(out.emplace_back(family("meridian_workers", "Worker threads serving the data path",
                                    MetricType::Gauge)),
            {}, static_cast<double>(workers_.size()));
  {
    std::lock_guard lock(io_backend_mutex_);
    if (!io_backend_.empty())
      add_value(
          out.emplace_back(family("meridian_io_backend_info",
                                  "The I/O reactor the data path runs on", MetricType::Gauge)),
          {{"backend", io_backend_}}, 1);
  }
  collect_process(version_, out);
  // A family without children prints nothing, as prometheus-cpp's registry did.
  std::erase_if(out, [](const MetricFamily& f) { return f.metric.empty(); });
  auto text = prometheus::TextSerializer().Serialize(out);
  for (const auto& source : text_sources_) text += source();
  return text;
}

}  // namespace meridian::metrics
