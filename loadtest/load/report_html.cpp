// The HTML report: run details, results, SLOs, errors, and SVG charts (latency, first token and
// per-token time, throughput and tokens over time, the latency distribution) with the SLO
// bounds drawn on them. Self-contained: no script, no external resource.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <sstream>

#include "load/report.hpp"

namespace meridian::loadtest {
namespace {
double ms(std::uint64_t ns) {
  return static_cast<double>(ns) / 1e6;
}

// A figure with `digits` decimals, for tables.
std::string fixed(double v, int digits) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
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
    else if (c == '\'')
      o += "&#39;";
    else if (c == '"')
      o += "&quot;";
    else
      o += c;
  }
  return o;
}

struct series {
  std::string name, color;
  std::vector<std::pair<double, double>> pts;
};
struct bound {  // a horizontal SLO line
  std::string name;
  double y;
};

// A line chart of (x, y) series on shared linear axes (x optionally log), with dashed lines
// for bounds.
std::string svg_chart(const std::string& title, const std::string& xlabel,
                      const std::string& ylabel, const std::vector<series>& ss,
                      const std::vector<bound>& bounds = {}, bool log_x = false) {
  const double W = 760, H = 300, L = 70, R = 20, T = 30, B = 45;
  double xmin = 1e300, xmax = -1e300, ymax = 0;
  for (auto& s : ss)
    for (auto [x, y] : s.pts) {
      double xv = log_x ? std::log10(std::max(x, 1e-9)) : x;
      xmin = std::min(xmin, xv), xmax = std::max(xmax, xv), ymax = std::max(ymax, y);
    }
  for (auto& b : bounds) ymax = std::max(ymax, b.y);
  if (xmin > xmax) xmin = 0, xmax = 1;
  if (xmax == xmin) xmax = xmin + 1;
  if (ymax <= 0) ymax = 1;
  ymax *= 1.08;
  auto px = [&](double x) {
    return L + ((log_x ? std::log10(std::max(x, 1e-9)) : x) - xmin) / (xmax - xmin) * (W - L - R);
  };
  auto py = [&](double y) { return T + (1 - y / ymax) * (H - T - B); };
  std::ostringstream o;
  o << "<svg xmlns='http://www.w3.org/2000/svg' class='chart' width='" << W << "' height='" << H
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
  for (auto& b : bounds) {
    o << "<line class='slo' x1='" << L << "' x2='" << W - R << "' y1='" << py(b.y) << "' y2='"
      << py(b.y) << "' stroke='#b00' stroke-dasharray='6 4'/>";
    o << "<text x='" << L + 5 << "' y='" << py(b.y) - 4 << "' fill='#b00'>SLO " << esc(b.name)
      << "</text>";
  }
  int li = 0;
  for (auto& s : ss) {
    if (s.pts.empty()) continue;
    o << "<polyline fill='none' stroke='" << s.color << "' stroke-width='1.5' points='";
    for (auto [x, y] : s.pts) o << px(x) << "," << py(y) << " ";
    o << "'/>";
    o << "<text x='" << W - R - 5 << "' y='" << T + 14 + 13 * li++ << "' text-anchor='end' fill='"
      << s.color << "'>" << esc(s.name) << "</text>";
  }
  o << "</svg>";
  return o.str();
}

// The latency SLOs on `m`, as lines in ms.
std::vector<bound> bounds_of(const load_config& cfg, std::initializer_list<slo_metric> ms) {
  std::vector<bound> out;
  for (const auto& s : cfg.slos)
    for (auto m : ms)
      if (s.metric == m && s.is_latency()) out.push_back({s.text, s.threshold});
  return out;
}

std::string run_details(const run_summary& s, const load_config& cfg) {
  std::ostringstream o;
  char when[32];
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm);
  auto row = [&](const char* k, const std::string& v) {
    o << "<tr><th>" << k << "</th><td>" << esc(v) << "</td></tr>";
  };
  o << "<h2>Run details</h2><table class='details'>";
  row("report written", when);
  row("target", cfg.url);
  row("mode", cfg.closed ? "closed loop" : "open loop");
  if (!cfg.closed) row("offered rate", num(cfg.rate) + " req/s");
  row("arrival", cfg.arrival == arrival_kind::constant  ? "constant"
                 : cfg.arrival == arrival_kind::poisson ? "Poisson"
                                                        : "gamma");
  row("duration",
      num(s.configured_duration_s) + " s (warm-up " + num(cfg.warmup_s) + " s left out)");
  row("connections, threads",
      std::to_string(cfg.connections) + ", " + std::to_string(cfg.threads) +
          (cfg.http2 ? " (h2, " + std::to_string(cfg.streams) + " streams each)" : ""));
  row("requests", cfg.api == openai_api::none
                      ? cfg.method + " " + cfg.path
                      : std::string(cfg.api == openai_api::chat          ? "chat"
                                    : cfg.api == openai_api::completions ? "completions"
                                    : cfg.api == openai_api::kserve      ? "KServe v2 gRPC"
                                                                         : "embeddings") +
                            (cfg.stream ? ", streamed" : "") + ", model " + cfg.model +
                            ", prompt tokens " + cfg.prompt_tokens.to_string() + ", max tokens " +
                            cfg.max_tokens.to_string());
  row("per-request timeout", num(cfg.timeout_s) + " s");
  row("seed", std::to_string(cfg.seed));
  o << "</table>";
  return o.str();
}

// The results, SLOs, errors, status codes and backends, as tables.
std::string tables(const run_summary& s) {
  std::ostringstream o;
  o << "<table><tr><th>succeeded</th><th>failed</th><th>duration (s)</th><th>requests/s</th>"
       "<th>goodput (req/s)</th><th>output tokens/s</th><th>sent late</th><th>never "
       "sent</th></tr><tr><td>"
    << s.completed << "</td><td>" << s.failed << "</td><td>" << fixed(s.duration_s, 2)
    << "</td><td>" << fixed(s.request_throughput(), 2) << "</td><td>" << fixed(s.goodput(), 2)
    << "</td><td>"
    << fixed(s.duration_s > 0 ? static_cast<double>(s.output_tokens) / s.duration_s : 0, 1)
    << "</td><td>" << s.late << "</td><td>" << s.unsent << "</td></tr></table><br>";
  o << "<table><tr><th>ms</th><th>mean</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</"
       "th><th>p99.99</th><th>max</th></tr>";
  for (auto [n, h] : {std::pair<const char*, const histogram*>{"end to end", &s.e2el},
                      {"time to first token", &s.ttft},
                      {"time per output token", &s.tpot},
                      {"inter-token latency", &s.itl},
                      {"send lag", &s.send_lag}}) {
    if (!h->count()) continue;
    o << "<tr><th>" << n << "</th>";
    for (double v :
         {h->mean() / 1e6, ms(h->percentile(50)), ms(h->percentile(90)), ms(h->percentile(99)),
          ms(h->percentile(99.9)), ms(h->percentile(99.99)), ms(h->max())})
      o << "<td>" << fixed(v, 2) << "</td>";
    o << "</tr>";
  }
  o << "</table>";
  if (!s.slo_results.empty()) {
    o << "<h2>SLOs</h2><table><tr><th>SLO</th><th>observed</th><th>result</th></tr>";
    for (auto& r : s.slo_results)
      o << "<tr><td>" << esc(r.text) << "</td><td>" << esc(with_unit(r.metric, r.observed))
        << "</td><td class='" << (r.pass ? "pass'>PASS" : "miss'>MISS") << "</td></tr>";
    o << "</table>";
  }
  o << "<h2>Errors</h2>";
  if (s.errors.empty()) {
    o << "<p>None.</p>";
  } else {
    o << "<table class='errors'><tr><th>kind</th><th>requests</th></tr>";
    for (auto& [k, n] : s.errors) o << "<tr><td>" << esc(k) << "</td><td>" << n << "</td></tr>";
    o << "</table>";
  }
  if (!s.status_counts.empty()) {
    o << "<h2>Status codes</h2><table><tr><th>status</th><th>responses</th></tr>";
    for (auto& [code, n] : s.status_counts)
      o << "<tr><td>" << code << "</td><td>" << n << "</td></tr>";
    o << "</table>";
  }
  if (!s.per_backend.empty()) {
    o << "<h2>Per backend</h2><table><tr><th>backend</th><th>requests</th><th>share</th>"
         "<th>e2e p50 (ms)</th><th>e2e p99 (ms)</th><th>ttft p50 (ms)</th><th>ttft p99 "
         "(ms)</th></tr>";
    auto lat = backend_latencies(s);
    std::uint64_t tot = 0;
    for (auto& b : s.per_backend) tot += b.second;
    for (std::size_t i = 0; i < s.per_backend.size(); ++i) {
      const auto& [n, c] = s.per_backend[i];
      o << "<tr><td>" << esc(n) << "</td><td>" << c << "</td><td>"
        << fixed(tot ? 100.0 * static_cast<double>(c) / static_cast<double>(tot) : 0, 1)
        << "%</td>";
      for (double v : {lat[i].e2el_p50, lat[i].e2el_p99, lat[i].ttft_p50, lat[i].ttft_p99})
        o << "<td>" << (v >= 0 ? fixed(v, 1) : std::string("-")) << "</td>";
      o << "</tr>";
    }
    o << "</table>";
  }
  return o.str();
}

// Latency, first-token and per-token time, requests and tokens over time, and the latency
// distribution, with the latency SLOs drawn on them.
std::string charts(const run_summary& s, const load_config& cfg) {
  std::ostringstream o;
  series p50{"p50", "#1f77b4", {}}, p99{"p99", "#d62728", {}}, mx{"max", "#999", {}};
  series t50{"ttft p50", "#1f77b4", {}}, t99{"ttft p99", "#d62728", {}},
      o50{"tpot p50", "#2ca02c", {}}, o99{"tpot p99", "#9467bd", {}};
  series thr{"succeeded/s", "#1f77b4", {}}, fail{"failed/s", "#d62728", {}},
      tok{"output tokens/s", "#2ca02c", {}};
  for (auto& iv : s.timeline) {
    const double mid = iv.start_s + s.interval_s / 2;
    if (iv.e2el) {
      p50.pts.emplace_back(mid, ms(iv.e2el->percentile(50)));
      p99.pts.emplace_back(mid, ms(iv.e2el->percentile(99)));
      mx.pts.emplace_back(mid, ms(iv.e2el->max()));
    }
    if (iv.ttft) {
      t50.pts.emplace_back(mid, ms(iv.ttft->percentile(50)));
      t99.pts.emplace_back(mid, ms(iv.ttft->percentile(99)));
    }
    if (iv.tpot) {
      o50.pts.emplace_back(mid, ms(iv.tpot->percentile(50)));
      o99.pts.emplace_back(mid, ms(iv.tpot->percentile(99)));
    }
    thr.pts.emplace_back(mid, static_cast<double>(iv.completed) / s.interval_s);
    fail.pts.emplace_back(mid, static_cast<double>(iv.failed) / s.interval_s);
    tok.pts.emplace_back(mid, static_cast<double>(iv.output_tokens) / s.interval_s);
  }
  o << "<h2>Latency over time</h2>"
    << svg_chart("end-to-end latency by intended send time", "seconds", "ms", {p50, p99, mx},
                 bounds_of(cfg, {slo_metric::e2el}));
  if (!t50.pts.empty())
    o << "<h2>First token and per-token time over time</h2>"
      << svg_chart("time to first token and time per output token by intended send time", "seconds",
                   "ms", {t50, t99, o50, o99},
                   bounds_of(cfg, {slo_metric::ttft, slo_metric::tpot}));
  o << "<h2>Throughput over time</h2>"
    << svg_chart("requests per second (by completion time)", "seconds", "req/s", {thr, fail});
  if (cfg.api != openai_api::none)
    o << svg_chart("output tokens per second (by completion time)", "seconds", "tokens/s", {tok});
  series dist{"e2el", "#1f77b4", {}};
  for (double p : {0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0})
    if (s.e2el.count())
      dist.pts.emplace_back(100.0 / std::max(1e-3, 100.0 - p), ms(s.e2el.percentile(p)));
  o << "<h2>Latency distribution</h2>"
    << svg_chart(
           "end-to-end latency by percentile (x: 1/(1-p), log scale: 10 = p90, 100 = p99, 1000 = "
           "p99.9)",
           "1/(1-p)", "ms", {dist}, bounds_of(cfg, {slo_metric::e2el}), true);
  return o.str();
}
}  // namespace

std::string render_html(const run_summary& s, const load_config& cfg) {
  std::ostringstream o;
  o << "<!doctype html><html><head><meta charset='utf-8'><title>meridian-load report</title>"
       "<style>body{font-family:sans-serif;margin:20px;color:#222}table{border-collapse:collapse}"
       "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f4f4f4}"
       "table.details td{text-align:left}"
       ".miss{color:#b00;font-weight:bold}.pass{color:#070}</style></head><body>";
  o << "<h1>meridian-load report" << (s.label.empty() ? "" : ": " + esc(s.label)) << "</h1>";
  o << "<p class='verdict'><b>" << esc(verdict(s)) << "</b></p>";
  o << "<p>Latencies are in milliseconds, measured from each request's intended send time (so a "
       "server that falls behind shows it, not the load tool).</p>";
  o << tables(s) << charts(s, cfg);
  o << run_details(s, cfg);
  o << "</body></html>\n";
  return o.str();
}

}  // namespace meridian::loadtest
