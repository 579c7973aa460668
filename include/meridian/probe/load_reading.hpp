// Reads a model server's load (queued requests, running requests, KV-cache use) from the text
// of its /metrics; plain values built and consumed on the control thread.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace meridian::probe {

// Which metric names carry each signal. Names match exactly: a histogram's _bucket, _sum and
// _count series are other names and never match the family's own name.
struct load_mapping {
  std::vector<std::string> waiting;   // requests queued, not yet scheduled
  std::vector<std::string> running;   // requests in the running batch
  std::vector<std::string> kv_usage;  // fraction of the KV cache in use, 0..1

  // vLLM, SGLang, TGI and Triton, old vLLM names included.
  static load_mapping defaults();
};

struct load_reading {
  // Each signal is nullopt when no usable sample of any of its names was found. waiting and
  // running are sums over every series of every listed name (several models, engines or data
  // parallel ranks on one backend); kv_usage is the fullest series, clamped to [0, 1].
  std::optional<double> waiting;
  std::optional<double> running;
  std::optional<double> kv_usage;
  // process_start_time_seconds (Prometheus clients export it: vLLM, SGLang): when it changes the
  // server restarted, and its caches are empty.
  std::optional<double> started;
  std::size_t samples = 0;    // sample lines in the text, listed names or not
  std::size_t malformed = 0;  // lines that did not parse

  bool any() const { return waiting || running || kv_usage; }
};

// Samples that are NaN, infinite or negative are ignored, as if absent. Never throws on any
// text; allocates nothing beyond the result.
load_reading extract_load(std::string_view text, const load_mapping& m);

}  // namespace meridian::probe
