// Rendering of a finished run: terminal table, vLLM-style JSON, per-request CSV, self-contained
// HTML.
#pragma once
#include <cstdio>
#include <string>
#include <vector>

#include "load/load.hpp"

namespace meridian::loadtest {

void print_table(const run_summary& s, const load_config& cfg, std::FILE* out);
// The one-line verdict printed last: PASS, DONE (no SLO given), or FAIL and why.
std::string verdict(const run_summary& s);
std::string summary_json(const run_summary& s, const load_config& cfg);
bool write_file(const std::string& path, const std::string& content, std::string& err);
std::string render_csv(const run_summary& s);
std::string render_html(const run_summary& s, const load_config& cfg);
// Each backend's latencies (same order as s.per_backend) from its successful requests, in ms;
// -1 where it has none (ttft: streams only).
struct backend_latency {
  double e2el_p50 = -1, e2el_p99 = -1, ttft_p50 = -1, ttft_p99 = -1;
};
std::vector<backend_latency> backend_latencies(const run_summary& s);

}  // namespace meridian::loadtest
