#include "load/report.hpp"

#include <algorithm>
#include <boost/json.hpp>
#include <cmath>
#include <fstream>
#include <sstream>

namespace meridian::loadtest {

namespace json = boost::json;

namespace {
double ms(std::uint64_t ns) {
  return static_cast<double>(ns) / 1e6;
}

json::object stats_object(const histogram& h) {
  return {{"count", h.count()},
          {"mean", h.mean() / 1e6},
          {"std", h.stddev() / 1e6},
          {"min", ms(h.min())},
          {"p50", ms(h.percentile(50))},
          {"p90", ms(h.percentile(90))},
          {"p95", ms(h.percentile(95))},
          {"p99", ms(h.percentile(99))},
          {"p999", ms(h.percentile(99.9))},
          {"p9999", ms(h.percentile(99.99))},
          {"max", ms(h.max())}};
}

const char* api_name(openai_api a) {
  switch (a) {
    case openai_api::chat:
      return "chat";
    case openai_api::completions:
      return "completions";
    case openai_api::embeddings:
      return "embeddings";
    case openai_api::kserve:
      return "kserve";
    default:
      return "none";
  }
}

}  // namespace

std::string verdict(const run_summary& s) {
  auto total = s.completed + s.failed;
  if (total > 0 && s.completed == 0)
    return "verdict: FAIL, every request failed (" + std::to_string(s.failed) + " of " +
           std::to_string(total) + ")";
  std::string counts =
      std::to_string(s.completed) + " of " + std::to_string(total) + " requests succeeded";
  if (!s.slo_pass) {
    std::string missed;
    for (const auto& r : s.slo_results)
      if (!r.pass)
        missed += (missed.empty() ? "" : ", ") + r.text + " (observed " +
                  with_unit(r.metric, r.observed) + ")";
    return "verdict: FAIL, SLO missed: " + missed + "; " + counts;
  }
  if (s.slo_results.empty()) return "verdict: DONE, no SLO given; " + counts;
  return "verdict: PASS, all " + std::to_string(s.slo_results.size()) + " SLOs met; " + counts;
}

void print_table(const run_summary& s, const load_config& cfg, std::FILE* out) {
  std::fprintf(out, "============ meridian-load result%s%s ============\n",
               s.label.empty() ? "" : ": ", s.label.c_str());
  std::fprintf(out, "%-34s %s\n", "Target:", cfg.url.c_str());
  std::fprintf(out, "%-34s %s\n", "Mode:", cfg.closed ? "closed loop" : "open loop");
  if (cfg.http2)
    std::fprintf(out, "%-34s h2, %d connections x %d streams\n", "Protocol:", cfg.connections,
                 cfg.streams);
  std::fprintf(out, "%-34s %llu\n",
               "Successful requests:", static_cast<unsigned long long>(s.completed));
  std::fprintf(out, "%-34s %llu\n", "Failed requests:", static_cast<unsigned long long>(s.failed));
  for (auto& [k, v] : s.errors)
    std::fprintf(out, "  %-32s %llu\n", k.c_str(), static_cast<unsigned long long>(v));
  std::fprintf(out, "%-34s %.2f\n", "Benchmark duration (s):", s.duration_s);
  std::fprintf(out, "%-34s %.2f\n", "Request throughput (req/s):", s.request_throughput());
  if (!cfg.slos.empty()) std::fprintf(out, "%-34s %.2f\n", "Request goodput (req/s):", s.goodput());
  std::fprintf(out, "%-34s %llu (>%.3gms after intended)\n",
               "Sent late:", static_cast<unsigned long long>(s.late), cfg.late_threshold_ms);
  std::fprintf(out, "%-34s %llu\n", "Never sent:", static_cast<unsigned long long>(s.unsent));
  if (cfg.api != openai_api::none) {
    std::fprintf(out, "%-34s %llu\n",
                 "Total input tokens:", static_cast<unsigned long long>(s.input_tokens));
    std::fprintf(out, "%-34s %llu\n",
                 "Total generated tokens:", static_cast<unsigned long long>(s.output_tokens));
    std::fprintf(out, "%-34s %.2f\n", "Output token throughput (tok/s):",
                 s.duration_s > 0 ? static_cast<double>(s.output_tokens) / s.duration_s : 0);
    if (cfg.stream)
      std::fprintf(out, "%-34s %llu of %llu\n",
                   cfg.api == openai_api::kserve ? "Clumped messages:" : "Clumped SSE events:", static_cast<unsigned long long>(s.clumped_events),
                   static_cast<unsigned long long>(s.token_events));
  }
  std::fprintf(out, "%-10s %9s %9s %9s %9s %9s %9s %9s\n", "(ms)", "mean", "p50", "p90", "p99",
               "p99.9", "p99.99", "max");
  auto row = [&](const char* name, const histogram& h) {
    if (h.count() == 0) return;
    std::fprintf(out, "%-10s %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f\n", name, h.mean() / 1e6,
                 ms(h.percentile(50)), ms(h.percentile(90)), ms(h.percentile(99)),
                 ms(h.percentile(99.9)), ms(h.percentile(99.99)), ms(h.max()));
  };
  row("e2el", s.e2el);
  row("ttft", s.ttft);
  row("tpot", s.tpot);
  row("itl", s.itl);
  row("send lag", s.send_lag);
  row("handshake", s.handshake);
  if (cfg.tls)
    std::fprintf(out, "%-34s %llu (%llu resumed), %llu failed%s%s\n", "TLS handshakes:",
                 static_cast<unsigned long long>(s.handshakes),
                 static_cast<unsigned long long>(s.resumed),
                 static_cast<unsigned long long>(s.handshake_failures),
                 s.handshake_error.empty() ? "" : ": ", s.handshake_error.c_str());
  if (!s.per_backend.empty()) {
    std::uint64_t tot = 0;
    for (auto& b : s.per_backend) tot += b.second;
    std::fprintf(out, "Per backend (%s):%39s e2e p50     p99  ttft p50     p99 (ms)\n",
                 cfg.backend_header.c_str(), "");
    auto lat = backend_latencies(s);
    for (std::size_t i = 0; i < s.per_backend.size(); ++i) {
      const auto& [n, c] = s.per_backend[i];
      std::fprintf(out, "  %-32s %8llu (%5.1f%%) %8.1f %7.1f %9.1f %7.1f\n", n.c_str(),
                   static_cast<unsigned long long>(c),
                   tot ? 100.0 * static_cast<double>(c) / static_cast<double>(tot) : 0,
                   lat[i].e2el_p50, lat[i].e2el_p99, lat[i].ttft_p50, lat[i].ttft_p99);
    }
  }
  for (auto& r : s.slo_results)
    std::fprintf(out, "SLO %-30s observed %-14s %s\n", r.text.c_str(),
                 with_unit(r.metric, r.observed).c_str(), r.pass ? "PASS" : "MISS");
  std::fprintf(out, "==================================================\n");
  std::fprintf(out, "%s\n", verdict(s).c_str());
}

std::string summary_json(const run_summary& s, const load_config& cfg) {
  json::object o;
  o["label"] = s.label;
  o["url"] = cfg.url;
  o["mode"] = cfg.closed ? "closed" : "open";
  o["openai"] = api_name(cfg.api);
  o["stream"] = cfg.stream;
  o["connections"] = cfg.connections;
  o["protocol"] = cfg.http2 ? "h2" : "http/1.1";
  o["streams_per_connection"] = cfg.streams;
  o["threads"] = cfg.threads;
  o["request_rate"] = cfg.closed ? json::value(nullptr) : json::value(cfg.rate);
  o["duration"] = s.duration_s;
  o["configured_duration"] = s.configured_duration_s;
  o["completed"] = s.completed;
  o["failed"] = s.failed;
  o["sent"] = s.sent;
  o["late"] = s.late;
  o["unsent"] = s.unsent;
  o["error_rate"] = s.error_rate();
  o["request_throughput"] = s.request_throughput();
  o["goodput"] = s.goodput();
  o["request_goodput"] = s.goodput();
  o["total_input_tokens"] = s.input_tokens;
  o["total_output_tokens"] = s.output_tokens;
  o["output_throughput"] =
      s.duration_s > 0 ? static_cast<double>(s.output_tokens) / s.duration_s : 0;
  o["total_token_throughput"] =
      s.duration_s > 0 ? static_cast<double>(s.output_tokens + s.input_tokens) / s.duration_s : 0;
  o["token_events"] = s.token_events;
  o["clumped_events"] = s.clumped_events;
  o["e2el_ms"] = stats_object(s.e2el);
  o["ttft_ms"] = stats_object(s.ttft);
  o["tpot_ms"] = stats_object(s.tpot);
  o["itl_ms"] = stats_object(s.itl);
  o["send_lag_ms"] = stats_object(s.send_lag);
  if (cfg.tls) {
    o["tls_handshake_ms"] = stats_object(s.handshake);
    o["tls_handshakes"] = s.handshakes;
    o["tls_resumed"] = s.resumed;
    o["tls_handshake_failures"] = s.handshake_failures;
    o["tls_handshake_error"] = s.handshake_error;  // the first failure's reason, "" for none
  }
  // vLLM's flat names for the common fields, so existing tooling can read the file.
  for (auto [name, h] : {std::pair<const char*, const histogram*>{"ttft", &s.ttft},
                         {"tpot", &s.tpot},
                         {"itl", &s.itl},
                         {"e2el", &s.e2el}}) {
    o[std::string("mean_") + name + "_ms"] = h->mean() / 1e6;
    o[std::string("median_") + name + "_ms"] = ms(h->percentile(50));
    o[std::string("std_") + name + "_ms"] = h->stddev() / 1e6;
    o[std::string("p99_") + name + "_ms"] = ms(h->percentile(99));
  }
  json::object errs;
  for (auto& [k, v] : s.errors) errs[k] = v;
  o["errors"] = std::move(errs);
  json::object st;
  for (auto& [k, v] : s.status_counts) st[std::to_string(k)] = v;
  o["status_counts"] = std::move(st);
  json::object pb;
  std::uint64_t tot = 0;
  for (auto& b : s.per_backend) tot += b.second;
  auto lat = backend_latencies(s);
  for (std::size_t i = 0; i < s.per_backend.size(); ++i) {
    const auto& [n, c] = s.per_backend[i];
    pb[n] = {{"count", c},
             {"share", tot ? static_cast<double>(c) / static_cast<double>(tot) : 0.0},
             {"e2el_p50_ms", lat[i].e2el_p50},
             {"e2el_p99_ms", lat[i].e2el_p99},
             {"ttft_p50_ms", lat[i].ttft_p50},
             {"ttft_p99_ms", lat[i].ttft_p99}};
  }
  o["per_backend"] = std::move(pb);
  json::array slos;
  for (auto& r : s.slo_results)
    slos.push_back({{"slo", r.text}, {"observed", r.observed}, {"pass", r.pass}});
  o["slo"] = std::move(slos);
  o["slo_passed"] = s.slo_pass;
  json::array tl;
  for (auto& iv : s.timeline) {
    json::object x{{"t", iv.start_s},
                   {"completed", iv.completed},
                   {"failed", iv.failed},
                   {"throughput", static_cast<double>(iv.completed) / s.interval_s}};
    if (iv.e2el)
      x["e2el_ms"] = {{"p50", ms(iv.e2el->percentile(50))},
                      {"p99", ms(iv.e2el->percentile(99))},
                      {"max", ms(iv.e2el->max())}};
    if (iv.ttft)
      x["ttft_ms"] = {{"p50", ms(iv.ttft->percentile(50))}, {"p99", ms(iv.ttft->percentile(99))}};
    tl.push_back(std::move(x));
  }
  o["timeline_interval_s"] = s.interval_s;
  o["timeline"] = std::move(tl);
  return json::serialize(o);
}

bool write_file(const std::string& path, const std::string& content, std::string& err) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) {
    err = "cannot open " + path;
    return false;
  }
  f << content;
  if (!f) {
    err = "cannot write " + path;
    return false;
  }
  return true;
}

std::vector<backend_latency> backend_latencies(const run_summary& s) {
  std::vector<std::vector<double>> e2el(s.per_backend.size()), ttft(s.per_backend.size());
  for (const auto& r : s.records) {
    if (r.backend >= s.per_backend.size() || r.status < 200 || r.status >= 300 ||
        static_cast<error_kind>(r.error) != error_kind::none)
      continue;
    e2el[r.backend].push_back(r.e2el_ms);
    if (r.ttft_ms > 0) ttft[r.backend].push_back(r.ttft_ms);  // 0: no stream
  }
  auto pct = [](std::vector<double>& v, double q) {
    if (v.empty()) return -1.0;
    auto k = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
    return v[k];
  };
  std::vector<backend_latency> out(s.per_backend.size());
  for (std::size_t i = 0; i < out.size(); ++i)
    out[i] = {pct(e2el[i], 0.5), pct(e2el[i], 0.99), pct(ttft[i], 0.5), pct(ttft[i], 0.99)};
  return out;
}

std::string render_csv(const run_summary& s) {
  std::string o = "intended_s,send_lag_ms,ttft_ms,e2el_ms,status,output_tokens,backend,error\n";
  char line[256];
  for (auto& r : s.records) {
    const char* be = r.backend < s.backend_names.size() ? s.backend_names[r.backend].c_str() : "";
    std::snprintf(line, sizeof line, "%.6f,%.3f,%.3f,%.3f,%u,%u,%s,%s\n", r.intended_s,
                  r.send_lag_ms, r.ttft_ms, r.e2el_ms, r.status, r.output_tokens, be,
                  error_kind_name(static_cast<error_kind>(r.error)));
    o += line;
  }
  return o;
}

}  // namespace meridian::loadtest
