#include "meridian/probe/load_reading.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "meridian/probe/prometheus_text.hpp"

namespace meridian::probe {
namespace {

bool listed(const std::vector<std::string>& names, std::string_view name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

// Counts are small, but a hostile backend can send values that overflow when added; a saturated
// sum still reads as "very loaded" instead of infinity.
void add(std::optional<double>& sum, double v) {
  const double total = sum.value_or(0.0) + v;  // 0.0 + v also turns -0.0 into 0.0
  sum = std::isfinite(total) ? total : std::numeric_limits<double>::max();
}

}  // namespace

load_mapping load_mapping::defaults() {
  return {
      .waiting = {"vllm:num_requests_waiting", "sglang:num_queue_reqs", "tgi_queue_size",
                  "nv_inference_pending_request_count"},
      .running = {"vllm:num_requests_running", "sglang:num_running_reqs", "tgi_batch_current_size"},
      // vLLM renamed gpu_cache_usage_perc to kv_cache_usage_perc; a backend may expose either.
      .kv_usage = {"vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "sglang:token_usage"},
  };
}

load_reading extract_load(std::string_view text, const load_mapping& m) {
  load_reading r;
  const parse_stats stats = for_each_sample(text, [&](const sample& s) {
    // Exporters write NaN for "no data yet"; one such series must not poison a sum or a max.
    if (!std::isfinite(s.value) || s.value < 0) return;
    if (listed(m.waiting, s.name)) add(r.waiting, s.value);
    if (listed(m.running, s.name)) add(r.running, s.value);
    if (listed(m.kv_usage, s.name))
      r.kv_usage = std::max(r.kv_usage.value_or(0.0), std::min(s.value, 1.0));
    if (s.name == "process_start_time_seconds")
      r.started = std::max(r.started.value_or(0), s.value);
  });
  r.samples = stats.samples;
  r.malformed = stats.malformed;
  return r;
}

}  // namespace meridian::probe
