#include "load/report.hpp"

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
    default:
      return "none";
  }
}

std::string esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '<')
      o += "&lt;";
    else if (c == '>')
      o += "&gt;";
    else if (c == '&')
      o += "&amp;";
    else
      o += c;
  }
  return o;
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
                   "Clumped SSE events:", static_cast<unsigned long long>(s.clumped_events),
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
  if (!s.per_backend.empty()) {
    std::uint64_t tot = 0;
    for (auto& b : s.per_backend) tot += b.second;
    std::fprintf(out, "Per backend (x-mock-backend):\n");
    for (auto& [n, c] : s.per_backend)
      std::fprintf(out, "  %-32s %llu (%.1f%%)\n", n.c_str(), static_cast<unsigned long long>(c),
                   tot ? 100.0 * static_cast<double>(c) / static_cast<double>(tot) : 0);
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
  for (auto& [n, c] : s.per_backend)
    pb[n] = {{"count", c},
             {"share", tot ? static_cast<double>(c) / static_cast<double>(tot) : 0.0}};
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

namespace {
// A minimal line chart: series of (x, y) polylines on shared axes with a log-free linear y scale.
struct series {
  std::string name, color;
  std::vector<std::pair<double, double>> pts;
};

std::string svg_chart(const std::string& title, const std::string& xlabel,
                      const std::string& ylabel, const std::vector<series>& ss,
                      bool log_x = false) {
  const double W = 760, H = 300, L = 70, R = 20, T = 30, B = 45;
  double xmin = 1e300, xmax = -1e300, ymax = 0;
  for (auto& s : ss)
    for (auto [x, y] : s.pts) {
      double xv = log_x ? std::log10(std::max(x, 1e-9)) : x;
      xmin = std::min(xmin, xv), xmax = std::max(xmax, xv), ymax = std::max(ymax, y);
    }
  if (xmin > xmax) xmin = 0, xmax = 1;
  if (xmax == xmin) xmax = xmin + 1;
  if (ymax <= 0) ymax = 1;
  ymax *= 1.08;
  auto px = [&](double x) {
    return L + ((log_x ? std::log10(std::max(x, 1e-9)) : x) - xmin) / (xmax - xmin) * (W - L - R);
  };
  auto py = [&](double y) { return T + (1 - y / ymax) * (H - T - B); };
  std::ostringstream o;
  o << "<svg xmlns='http://www.w3.org/2000/svg' width='" << W << "' height='" << H
    << "' font-family='sans-serif' font-size='11'>";
  o << "<text x='" << L << "' y='18' font-size='14' font-weight='bold'>" << esc(title) << "</text>";
  o << "<rect x='" << L << "' y='" << T << "' width='" << W - L - R << "' height='" << H - T - B
    << "' fill='none' stroke='#999'/>";
  for (int i = 0; i <= 4; ++i) {
    double y = ymax * i / 4;
    o << "<line x1='" << L << "' x2='" << W - R << "' y1='" << py(y) << "' y2='" << py(y)
      << "' stroke='#eee'/>";
    o << "<text x='" << L - 5 << "' y='" << py(y) + 4 << "' text-anchor='end'>"
      << (std::round(y * 100) / 100) << "</text>";
  }
  for (int i = 0; i <= 5; ++i) {
    double xv = xmin + (xmax - xmin) * i / 5;
    double shown = log_x ? std::pow(10, xv) : xv;
    double x = L + (xv - xmin) / (xmax - xmin) * (W - L - R);
    o << "<text x='" << x << "' y='" << H - B + 15 << "' text-anchor='middle'>"
      << (std::round(shown * 100) / 100) << "</text>";
  }
  o << "<text x='" << (L + W - R) / 2 << "' y='" << H - 8 << "' text-anchor='middle'>"
    << esc(xlabel) << "</text>";
  o << "<text x='14' y='" << (T + H - B) / 2 << "' transform='rotate(-90 14 " << (T + H - B) / 2
    << ")' text-anchor='middle'>" << esc(ylabel) << "</text>";
  int li = 0;
  for (auto& s : ss) {
    o << "<polyline fill='none' stroke='" << s.color << "' stroke-width='1.5' points='";
    for (auto [x, y] : s.pts) o << px(x) << "," << py(y) << " ";
    o << "'/>";
    o << "<text x='" << W - R - 5 << "' y='" << T + 14 + 13 * li++ << "' text-anchor='end' fill='"
      << s.color << "'>" << esc(s.name) << "</text>";
  }
  o << "</svg>";
  return o.str();
}
}  // namespace

std::string render_html(const run_summary& s, const load_config& cfg) {
  std::ostringstream o;
  o << "<!doctype html><html><head><meta charset='utf-8'><title>meridian-load report</title>"
       "<style>body{font-family:sans-serif;margin:20px;color:#222}table{border-collapse:collapse}"
       "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f4f4f4}"
       ".miss{color:#b00;font-weight:bold}.pass{color:#070}</style></head><body>";
  o << "<h1>meridian-load report" << (s.label.empty() ? "" : ": " + esc(s.label)) << "</h1>";
  o << "<p>Target <code>" << esc(cfg.url) << "</code>, "
    << (cfg.closed ? "closed loop" : "open loop") << ", " << cfg.connections << " connections, "
    << cfg.threads << " thread(s)";
  if (!cfg.closed) o << ", target rate " << cfg.rate << " req/s";
  o << ". Latencies are measured from each request's intended send time.</p>";
  o << "<table><tr><th>completed</th><th>failed</th><th>duration "
       "s</th><th>req/s</th><th>goodput</th><th>late</th><th>unsent</th></tr><tr><td>"
    << s.completed << "</td><td>" << s.failed << "</td><td>" << s.duration_s << "</td><td>"
    << s.request_throughput() << "</td><td>" << s.goodput() << "</td><td>" << s.late << "</td><td>"
    << s.unsent << "</td></tr></table><br>";
  o << "<table><tr><th>ms</th><th>mean</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</"
       "th><th>p99.99</th><th>max</th></tr>";
  for (auto [n, h] : {std::pair<const char*, const histogram*>{"e2el", &s.e2el},
                      {"ttft", &s.ttft},
                      {"tpot", &s.tpot},
                      {"itl", &s.itl},
                      {"send lag", &s.send_lag}}) {
    if (!h->count()) continue;
    o << "<tr><th>" << n << "</th><td>" << h->mean() / 1e6 << "</td><td>" << ms(h->percentile(50))
      << "</td><td>" << ms(h->percentile(90)) << "</td><td>" << ms(h->percentile(99)) << "</td><td>"
      << ms(h->percentile(99.9)) << "</td><td>" << ms(h->percentile(99.99)) << "</td><td>"
      << ms(h->max()) << "</td></tr>";
  }
  o << "</table>";
  if (!s.slo_results.empty()) {
    o << "<h2>SLOs</h2><table><tr><th>SLO</th><th>observed</th><th>result</th></tr>";
    for (auto& r : s.slo_results)
      o << "<tr><td>" << esc(r.text) << "</td><td>" << esc(with_unit(r.metric, r.observed))
        << "</td><td class='" << (r.pass ? "pass'>PASS" : "miss'>MISS") << "</td></tr>";
    o << "</table>";
  }
  if (!s.per_backend.empty()) {
    o << "<h2>Per backend</h2><table><tr><th>backend</th><th>requests</th></tr>";
    for (auto& [n, c] : s.per_backend)
      o << "<tr><td>" << esc(n) << "</td><td>" << c << "</td></tr>";
    o << "</table>";
  }
  series p50{"p50", "#1f77b4", {}}, p99{"p99", "#d62728", {}}, mx{"max", "#999", {}},
      tp50{"ttft p99", "#2ca02c", {}};
  series thr{"completed/s", "#1f77b4", {}}, fail{"failed/s", "#d62728", {}};
  for (auto& iv : s.timeline) {
    const double mid = iv.start_s + s.interval_s / 2;
    if (iv.e2el) {
      p50.pts.emplace_back(mid, ms(iv.e2el->percentile(50)));
      p99.pts.emplace_back(mid, ms(iv.e2el->percentile(99)));
      mx.pts.emplace_back(mid, ms(iv.e2el->max()));
    }
    if (iv.ttft) tp50.pts.emplace_back(mid, ms(iv.ttft->percentile(99)));
    thr.pts.emplace_back(mid, static_cast<double>(iv.completed) / s.interval_s);
    fail.pts.emplace_back(mid, static_cast<double>(iv.failed) / s.interval_s);
  }
  std::vector<series> lat{p50, p99, mx};
  if (!tp50.pts.empty()) lat.push_back(tp50);
  o << "<h2>Latency over time</h2>"
    << svg_chart("e2e latency by intended send time", "seconds", "ms", lat);
  o << "<h2>Throughput over time</h2>"
    << svg_chart("requests per second (by completion time)", "seconds", "req/s", {thr, fail});
  series dist{"e2el", "#1f77b4", {}};
  for (double p : {0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0})
    if (s.e2el.count())
      dist.pts.emplace_back(100.0 / std::max(1e-3, 100.0 - p), ms(s.e2el.percentile(p)));
  o << "<h2>Latency distribution</h2>"
    << svg_chart(
           "e2e latency by percentile (x: 1/(1-p), log scale: 10 = p90, 100 = p99, 1000 = p99.9)",
           "1/(1-p)", "ms", {dist}, true);
  o << "</body></html>\n";
  return o.str();
}

}  // namespace meridian::loadtest
