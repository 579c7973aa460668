// SLO gates ("e2el_p99<=50ms,error_rate<=0.1%") parsed once at startup and evaluated on the final
// summary.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace meridian::loadtest {

// Exit codes of meridian-load.
inline constexpr int exit_ok = 0;
inline constexpr int exit_usage = 2;
inline constexpr int exit_slo_missed = 3;
inline constexpr int exit_all_failed = 4;

enum class slo_metric { ttft, tpot, itl, e2el, error_rate, request_throughput, goodput, late_rate };
enum class slo_stat { none, mean, p50, p90, p95, p99, p999, p9999, max };
enum class slo_op { le, lt, ge, gt };

struct slo {
  slo_metric metric;
  slo_stat stat = slo_stat::none;
  slo_op op;
  double threshold;  // ms for latencies, fraction for rates, req/s for throughputs
  std::string text;

  bool is_latency() const {
    return metric == slo_metric::ttft || metric == slo_metric::tpot || metric == slo_metric::itl ||
           metric == slo_metric::e2el;
  }
  // Latency SLOs on ttft/tpot/e2el also act per request for goodput (as vLLM's --goodput does).
  bool per_request() const {
    return (metric == slo_metric::ttft || metric == slo_metric::tpot ||
            metric == slo_metric::e2el) &&
           (op == slo_op::le || op == slo_op::lt);
  }
  bool holds(double observed) const;
};

// Returns nullopt and sets err on malformed input.
std::optional<std::vector<slo>> parse_slos(std::string_view text, std::string& err);
double stat_percentile(slo_stat s);  // -1 for mean, 100 for max

struct slo_result {
  std::string text;
  double observed;  // in the SLO's own unit: ms, a fraction, req/s
  bool pass;
  slo_metric metric = slo_metric::e2el;
};

// An observed value with its unit, as an SLO states it: "1170.0 ms", "0.67%", "29.30 req/s".
std::string with_unit(slo_metric m, double v);

// Per-request thresholds in ns (0 = none) derived from the SLO list for goodput counting.
struct request_slo {
  std::uint64_t ttft_ns = 0, tpot_ns = 0, e2el_ns = 0;
  bool any() const { return ttft_ns || tpot_ns || e2el_ns; }
};
request_slo per_request_thresholds(const std::vector<slo>& slos);

}  // namespace meridian::loadtest
