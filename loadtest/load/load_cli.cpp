// Command line of meridian-load: flags (over an optional scenario), run, reports, exit code.
#include <cstdio>
#include <cstring>
#include <iostream>

#include "load/load.hpp"
#include "load/report.hpp"
#include "load/scenario.hpp"

namespace meridian::loadtest {

namespace {
const char* help_text =
    R"(meridian-load: open/closed-loop HTTP and OpenAI load generator (loopback targets only)

usage: meridian-load --url http://127.0.0.1:PORT/PATH (--rate R | --closed) [options]

load shape
  --rate R                 target requests/s (open loop)
  --duration D             e.g. 30s (default 10s)
  --warmup D               leave requests intended in the first D out of the statistics
  --arrival KIND           constant | poisson | gamma (default poisson)
  --burstiness F           gamma shape: 1 = Poisson, <1 burstier, >1 smoother (default 1)
  --connections N          keep-alive connections (default 64)
  --threads T              io threads (default 1)
  --closed                 closed loop: every connection sends back to back (max throughput)
  --requests N             stop after N requests
  --max-pending N          queue for requests waiting for a free connection (default 100000)
  --timeout D              per-request timeout (default 30s)
  --drain D                how long to wait for in-flight requests after the end (default 10s)
  --late-threshold D       a send later than this after its intended time counts as late (default 1ms)
  --expected-itl D         token spacing the server is expected to keep (default 2ms; 0 = trust each
                           request's own TPOT); token events sharing one read are "clumped" when > 1ms
requests
  --method M --body JSON   plain HTTP mode (default GET, no body)
  --openai API             chat | completions | embeddings (path defaults to /v1/...)
  --stream                 ask for SSE streaming with usage
  --prompt-tokens DIST     fixed:N | uniform:A:B | normal:MEAN:SD | exponential:MEAN (default fixed:128)
  --max-tokens DIST        same forms (default fixed:16)
  --shared-prefix N        first N prompt tokens identical in every request (prefix cache)
  --model NAME             (default mock-llm)
  --storage                object-store mix: --objects N --object-size SIZE --put-ratio F --range-ratio F
gates and output
  --slo LIST               e.g. "e2el_p99<=50ms,ttft_p99<=200ms,error_rate<=0.1%"
                           metrics: ttft_|tpot_|itl_|e2el_ + mean|p50|p90|p95|p99|p999|p9999|max,
                           error_rate, late_rate, request_throughput, goodput (req/s); ops <= < >= >
                           ttft/tpot/e2el upper bounds also define per-request goodput.
  --json F  --csv F  --html F   result files (vLLM-style JSON, per-request CSV, HTML with SVG charts)
  --scenario FILE.yaml     take the `load:` section of a scenario (flags given too override it)
  --scenario-json FILE     print a scenario file as JSON and exit (used by run-scenario)
  --label NAME  --seed N  --progress on|off  --quiet
exit codes
  0  finished and every SLO met (or none given)
  2  bad usage or configuration
  3  finished but an SLO was missed
)";

bool flag_takes_value(const std::string& f) {
  static const char* no_value[] = {"--closed", "--stream", "--storage", "--quiet", "--help", "-h"};
  for (auto* n : no_value)
    if (f == n) return false;
  return true;
}

bool known_flag(const std::string& f) {
  static const char* known[] = {
      "--url",        "--rate",           "--duration",     "--warmup",
      "--arrival",    "--burstiness",     "--connections",  "--threads",
      "--closed",     "--requests",       "--max-pending",  "--timeout",
      "--drain",      "--late-threshold", "--expected-itl", "--method",
      "--body",       "--openai",         "--stream",       "--prompt-tokens",
      "--max-tokens", "--shared-prefix",  "--model",        "--storage",
      "--objects",    "--object-size",    "--put-ratio",    "--range-ratio",
      "--slo",        "--json",           "--csv",          "--html",
      "--label",      "--seed",           "--progress",     "--quiet",
      "--scenario"};
  for (auto* k : known)
    if (f == k) return true;
  return false;
}
}  // namespace

int load_main(int argc, char** argv) {
  std::vector<std::string> a(argv + 1, argv + argc);
  load_config cfg;
  auto fail = [](const std::string& m) {
    std::cerr << "meridian-load: " << m << "\n(see --help)\n";
    return exit_usage;
  };
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i] == "--help" || a[i] == "-h") {
      std::cout << help_text;
      return exit_ok;
    }
    if (a[i] == "--scenario-json") {
      if (i + 1 >= a.size()) return fail("--scenario-json needs a file");
      try {
        std::cout << yaml_file_to_json(a[i + 1]) << "\n";
      } catch (const std::exception& e) {
        return fail(e.what());
      }
      return exit_ok;
    }
    if (a[i] == "--scenario") {
      if (i + 1 >= a.size()) return fail("--scenario needs a file");
      if (auto e = apply_scenario(a[i + 1], cfg); !e.empty()) return fail(e);
    }
  }
  for (std::size_t i = 0; i < a.size(); ++i) {
    const std::string& f = a[i];
    std::string v;
    if (f.rfind("--", 0) != 0) return fail("unexpected argument '" + f + "'");
    if (!known_flag(f)) return fail("unknown flag " + f);
    if (flag_takes_value(f)) {
      if (i + 1 >= a.size()) return fail(f + " needs a value");
      v = a[++i];
    }
    auto num = [&](double& out) {
      auto d = parse_double(v);
      if (!d || *d < 0) throw std::invalid_argument("bad number for " + f + ": " + v);
      out = *d;
    };
    auto dur = [&](double& out) {
      auto d = parse_duration(v);
      if (!d) throw std::invalid_argument("bad duration for " + f + ": " + v);
      out = static_cast<double>(d->count()) / 1e9;
    };
    auto dist = [&](int_dist& out) {
      auto d = int_dist::parse(v);
      if (!d) throw std::invalid_argument("bad distribution for " + f + ": " + v);
      out = *d;
    };
    try {
      double d = 0;
      if (f == "--scenario")
        continue;
      else if (f == "--url")
        cfg.url = v;
      else if (f == "--rate")
        num(cfg.rate), cfg.profile_points.clear();
      else if (f == "--duration")
        dur(cfg.duration_s);
      else if (f == "--warmup")
        dur(cfg.warmup_s);
      else if (f == "--arrival") {
        auto k = parse_arrival_kind(v);
        if (!k) throw std::invalid_argument("--arrival must be constant|poisson|gamma");
        cfg.arrival = *k;
      } else if (f == "--burstiness")
        num(cfg.burstiness);
      else if (f == "--connections")
        num(d), cfg.connections = static_cast<int>(d);
      else if (f == "--threads")
        num(d), cfg.threads = static_cast<int>(d);
      else if (f == "--closed")
        cfg.closed = true;
      else if (f == "--requests")
        num(d), cfg.max_requests = static_cast<std::uint64_t>(d);
      else if (f == "--max-pending")
        num(d), cfg.max_pending = static_cast<std::size_t>(d);
      else if (f == "--timeout")
        dur(cfg.timeout_s);
      else if (f == "--drain")
        dur(cfg.drain_s);
      else if (f == "--late-threshold")
        dur(d), cfg.late_threshold_ms = d * 1e3;
      else if (f == "--expected-itl")
        dur(d), cfg.expected_itl_ms = d * 1e3;
      else if (f == "--method")
        cfg.method = v;
      else if (f == "--body")
        cfg.body = v;
      else if (f == "--openai") {
        if (v == "chat")
          cfg.api = openai_api::chat;
        else if (v == "completions")
          cfg.api = openai_api::completions;
        else if (v == "embeddings")
          cfg.api = openai_api::embeddings;
        else
          throw std::invalid_argument("--openai must be chat|completions|embeddings");
      } else if (f == "--stream")
        cfg.stream = true;
      else if (f == "--prompt-tokens")
        dist(cfg.prompt_tokens);
      else if (f == "--max-tokens")
        dist(cfg.max_tokens);
      else if (f == "--shared-prefix")
        num(d), cfg.shared_prefix = static_cast<int>(d);
      else if (f == "--model")
        cfg.model = v;
      else if (f == "--storage")
        cfg.storage = true;
      else if (f == "--objects")
        num(d), cfg.objects = static_cast<int>(d);
      else if (f == "--object-size") {
        auto z = parse_size(v);
        if (!z) throw std::invalid_argument("bad size for --object-size");
        cfg.object_size = *z;
      } else if (f == "--put-ratio")
        num(cfg.put_ratio);
      else if (f == "--range-ratio")
        num(cfg.range_ratio);
      else if (f == "--slo")
        cfg.slo_text = v;
      else if (f == "--json")
        cfg.json_path = v;
      else if (f == "--csv")
        cfg.csv_path = v;
      else if (f == "--html")
        cfg.html_path = v;
      else if (f == "--label")
        cfg.label = v;
      else if (f == "--seed")
        num(d), cfg.seed = static_cast<std::uint64_t>(d);
      else if (f == "--progress")
        cfg.progress = v == "on" ? 1 : v == "off" ? 0 : -1;
      else if (f == "--quiet")
        cfg.quiet = true;
      else
        throw std::invalid_argument("unknown flag " + f);
    } catch (const std::exception& e) {
      return fail(e.what());
    }
  }
  if (auto e = cfg.finalize(); !e.empty()) return fail(e);

  run_summary s;
  try {
    s = run_load(cfg);
  } catch (const std::exception& e) {
    return fail(std::string("cannot run: ") + e.what());
  }
  if (!cfg.quiet) print_table(s, cfg, stdout);
  std::string err;
  if (!cfg.json_path.empty() && !write_file(cfg.json_path, summary_json(s, cfg) + "\n", err))
    return fail(err);
  if (!cfg.csv_path.empty() && !write_file(cfg.csv_path, render_csv(s), err)) return fail(err);
  if (!cfg.html_path.empty() && !write_file(cfg.html_path, render_html(s, cfg), err))
    return fail(err);
  std::fflush(stdout);
  return s.slo_pass ? exit_ok : exit_slo_missed;
}

}  // namespace meridian::loadtest
