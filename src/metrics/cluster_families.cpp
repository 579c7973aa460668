// The families by cluster that are not about connections: prefix affinity's look-ups, retries
// and the retry budget, TTFT hedges, streams interrupted after the client got bytes, shedding.
#include <prometheus/metric_family.h>

#include "metrics/exposition.hpp"

namespace meridian::metrics::detail {

inline constexpr const char* retry_reason_names[] = {"connect_failure", "reset_before_request",
                                                     "reset_before_response", "503", "grpc_status"};
static_assert(std::size(retry_reason_names) == static_cast<std::size_t>(retry_reason::count_));
inline constexpr const char* interruption_names[] = {"upstream", "deadline"};
inline constexpr const char* shed_names[] = {"queue_full", "timeout", "displaced", "client_share"};
static_assert(std::size(shed_names) == static_cast<std::size_t>(shed_reason::count_));
inline constexpr const char* hedge_names[] = {"sent", "won", "cancelled"};
static_assert(std::size(hedge_names) == static_cast<std::size_t>(hedge_event::count_));

void collect_prefix(const detail::series_plan& p, const workers_t& workers,
                    std::vector<MetricFamily>& out) {
  const std::size_t n = p.clusters.size();
  struct sums {
    std::uint64_t hits = 0, misses = 0, load = 0, cost = 0;
    std::array<std::uint64_t, prefix_metrics::tenths> matched{};
    double sum = 0;
  };
  std::vector<sums> s(n);
  for (const auto& w : workers) {
    for (std::size_t c = 0; c < n; ++c) {
      const auto& pm = w->cluster(c).prefix;
      s[c].hits += pm.hits.value();
      s[c].misses += pm.misses.value();
      s[c].load += pm.spill_load.value();
      s[c].cost += pm.spill_cost.value();
      for (std::size_t i = 0; i < pm.matched.size(); ++i) s[c].matched[i] += pm.matched[i].value();
      s[c].sum += pm.matched_sum.load(std::memory_order_relaxed);
    }
  }
  auto look =
      family("meridian_prefix_cache_lookups_total",
             "Prompt look-ups in the prefix index: hit when an endpoint held its first block",
             MetricType::Counter);
  auto ratio =
      family("meridian_prefix_matched_ratio",
             "Share of the prompt's blocks the prefix index knew the chosen endpoint to hold",
             MetricType::Histogram);
  auto spill = family("meridian_prefix_spills_total",
                      "Picks where the endpoint holding most of the prompt was not chosen",
                      MetricType::Counter);
  for (std::size_t c = 0; c < n; ++c) {
    const auto& cl = p.clusters[c];
    add_value(look, {{"cluster", cl}, {"result", "hit"}}, static_cast<double>(s[c].hits));
    add_value(look, {{"cluster", cl}, {"result", "miss"}}, static_cast<double>(s[c].misses));
    add_value(spill, {{"cluster", cl}, {"reason", "load"}}, static_cast<double>(s[c].load));
    add_value(spill, {{"cluster", cl}, {"reason", "cost"}}, static_cast<double>(s[c].cost));
    auto m = child({{"cluster", cl}});
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < prefix_metrics::tenths; ++i) {
      cumulative += s[c].matched[i];
      m.histogram.bucket.push_back({cumulative, static_cast<double>(i) / 10});
    }
    m.histogram.bucket.push_back({cumulative, std::numeric_limits<double>::infinity()});
    m.histogram.sample_count = cumulative;
    m.histogram.sample_sum = s[c].sum;
    ratio.metric.push_back(std::move(m));
  }
  for (auto* f : {&look, &ratio, &spill}) out.push_back(std::move(*f));
}

void collect_hedges(const series_plan& p, const workers_t& workers,
                    std::vector<MetricFamily>& out) {
  const std::size_t n = p.clusters.size();
  constexpr auto events = static_cast<std::size_t>(hedge_event::count_);
  std::vector<std::array<std::uint64_t, events>> hedges(n);
  std::vector<std::uint64_t> refused(n), stripes(n);
  std::vector<std::array<std::uint64_t, 3>> parts(n);
  for (const auto& w : workers) {
    for (std::size_t c = 0; c < n; ++c) {
      for (std::size_t e = 0; e < events; ++e) hedges[c][e] += w->cluster(c).hedges[e].value();
      refused[c] += w->cluster(c).hedge_budget_exhausted.value();
    }
  }
  auto h = family("meridian_hedges_total",
                  "TTFT hedging: hedges sent, hedges that answered first, and attempts cancelled "
                  "because the other one answered first",
                  MetricType::Counter);
  auto b =
      family("meridian_hedge_budget_exhausted_total",
             "Hedges not sent because the route's max_extra share was spent", MetricType::Counter);
  for (std::size_t c = 0; c < n; ++c) {
    for (std::size_t e = 0; e < events; ++e)
      add_value(h, {{"cluster", p.clusters[c]}, {"result", hedge_names[e]}},
                static_cast<double>(hedges[c][e]));
    add_value(b, {{"cluster", p.clusters[c]}}, static_cast<double>(refused[c]));
  }
  out.push_back(std::move(h));
  out.push_back(std::move(b));
}

void collect_resilience(const series_plan& p, const workers_t& workers,
                        std::vector<MetricFamily>& out) {
  const std::size_t n = p.clusters.size();
  constexpr auto reasons = static_cast<std::size_t>(retry_reason::count_);
  std::vector<std::array<std::uint64_t, reasons>> retries(n);
  std::vector<std::array<std::uint64_t, 2>> interrupted(n), resumes(n), object_resumes(n), bytes(n);
  std::vector<std::uint64_t> refused(n), stripes(n);
  std::vector<std::array<std::uint64_t, 3>> parts(n);
  constexpr auto shed_reasons = static_cast<std::size_t>(shed_reason::count_);
  std::vector<std::array<std::uint64_t, shed_reasons>> shed(n);
  std::vector<std::int64_t> pending(n);
  for (const auto& w : workers) {
    for (std::size_t c = 0; c < n; ++c) {
      const auto& cm = w->cluster(c);
      for (std::size_t r = 0; r < shed_reasons; ++r) shed[c][r] += cm.shed[r].value();
      pending[c] += cm.pending.value();
      for (std::size_t r = 0; r < reasons; ++r) retries[c][r] += cm.retries[r].value();
      for (std::size_t r = 0; r < 2; ++r) interrupted[c][r] += cm.streams_interrupted[r].value();
      for (std::size_t r = 0; r < 2; ++r) resumes[c][r] += cm.resumes[r].value();
      for (std::size_t r = 0; r < 2; ++r) object_resumes[c][r] += cm.object_resumes[r].value();
      for (std::size_t r = 0; r < 2; ++r) bytes[c][r] += cm.bytes[r].value();
      stripes[c] += cm.stripes.value();
      for (std::size_t r = 0; r < 3; ++r) parts[c][r] += cm.parts[r].value();
      refused[c] += cm.retry_budget_exhausted.value();
    }
  }
  auto ret = family("meridian_upstream_retries_total",
                    "Attempts sent to another endpoint after one failed, by what failed",
                    MetricType::Counter);
  auto bud =
      family("meridian_retry_budget_exhausted_total",
             "Retries not sent because the cluster's retry budget was spent", MetricType::Counter);
  auto cut = family("meridian_streams_interrupted_total",
                    "Responses ended abnormally after the client got bytes: the upstream failed, "
                    "or the request's deadline passed",
                    MetricType::Counter);
  auto res = family("meridian_stream_resumes_total",
                    "Streams cut by their backend that were continued on another endpoint with "
                    "the text so far (route resume), by whether the continuation answered",
                    MetricType::Counter);
  auto ores = family("meridian_storage_resumes_total",
                     "Object GETs cut by their replica that another replica was asked to continue "
                     "(a Range from the next byte, If-Range its ETag), by whether it did",
                     MetricType::Counter);
  auto by = family("meridian_cluster_bytes_total",
                   "Bytes of a cluster's requests and responses on client connections, heads "
                   "included: from_client (requests, uploads) and to_client (responses, downloads)",
                   MetricType::Counter);
  auto st = family("meridian_storage_stripes_total",
                   "Object GETs served by striping: Range parts from several replicas at once",
                   MetricType::Counter);
  auto pa = family("meridian_storage_parts_total",
                   "Part fetches of striped GETs: ok, reissued (a lagging part asked of a second "
                   "replica), failed (asked again elsewhere, or the download cut)",
                   MetricType::Counter);
  constexpr const char* part_results[] = {"ok", "reissued", "failed"};
  for (std::size_t c = 0; c < n; ++c) {
    const auto& cl = p.clusters[c];
    add_value(st, {{"cluster", cl}}, static_cast<double>(stripes[c]));
    for (std::size_t r = 0; r < 3; ++r)
      add_value(pa, {{"cluster", cl}, {"result", part_results[r]}},
                static_cast<double>(parts[c][r]));
    add_value(by, {{"cluster", cl}, {"direction", "from_client"}},
              static_cast<double>(bytes[c][0]));
    add_value(by, {{"cluster", cl}, {"direction", "to_client"}}, static_cast<double>(bytes[c][1]));
    add_value(ores, {{"cluster", cl}, {"result", "ok"}}, static_cast<double>(object_resumes[c][0]));
    add_value(ores, {{"cluster", cl}, {"result", "failed"}},
              static_cast<double>(object_resumes[c][1]));
    add_value(res, {{"cluster", cl}, {"result", "ok"}}, static_cast<double>(resumes[c][0]));
    add_value(res, {{"cluster", cl}, {"result", "failed"}}, static_cast<double>(resumes[c][1]));
    for (std::size_t r = 0; r < reasons; ++r)
      add_value(ret, {{"cluster", cl}, {"reason", retry_reason_names[r]}},
                static_cast<double>(retries[c][r]));
    add_value(bud, {{"cluster", cl}}, static_cast<double>(refused[c]));
    for (std::size_t r = 0; r < 2; ++r)
      add_value(cut, {{"cluster", cl}, {"reason", interruption_names[r]}},
                static_cast<double>(interrupted[c][r]));
  }
  auto sh = family("meridian_requests_shed_total",
                   "Requests refused by admission: 503 for a full queue, a wait too long or a "
                   "place taken by a higher priority; 429 for a client over its share",
                   MetricType::Counter);
  auto pe = family("meridian_pending_requests", "Requests waiting for admission to a cluster",
                   MetricType::Gauge);
  for (std::size_t c = 0; c < n; ++c) {
    for (std::size_t r = 0; r < shed_reasons; ++r)
      add_value(sh, {{"cluster", p.clusters[c]}, {"reason", shed_names[r]}},
                static_cast<double>(shed[c][r]));
    add_value(pe, {{"cluster", p.clusters[c]}}, static_cast<double>(pending[c]));
  }
  for (auto* f : {&ret, &bud, &cut, &res, &ores, &by, &st, &pa, &sh, &pe})
    out.push_back(std::move(*f));
  collect_hedges(p, workers, out);
}

}  // namespace meridian::metrics::detail
