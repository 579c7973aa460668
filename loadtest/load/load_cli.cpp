// Command line of meridian-load: flags (over an optional scenario), run, reports, exit code.
#include <cstdio>
#include <cstring>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "load/load.hpp"
#include "load/report.hpp"
#include "load/scenario.hpp"

namespace meridian::loadtest {

namespace {
const char* help_text =
    R"(meridian-load: open/closed-loop HTTP and OpenAI load generator

usage: meridian-load --url http://127.0.0.1:PORT/PATH (--rate R | --closed) [options]

target
  --url URL                http://IP:PORT/PATH; loopback (127.0.0.0/8, ::1) unless --allow-remote
  --allow-remote           allow a target off this machine (you are about to load someone's server)
  --header "Name: value"   an extra header on every request, e.g. an API key (repeatable)
  --cacert FILE            https://: verify the server's certificate against FILE (PEM)
  --insecure               https://: do not verify the server (say so explicitly)
  --sni NAME               https://: the name sent and verified (default: none sent, the
                           certificate verified against the URL's IP address)
  --tls-resume on|off      https://: new connections resume the last session (default on)
  --new-connection         a new connection for every request (handshake tests; the report
                           shows the handshake time on its own row)
  --http2                  HTTP/2: h2c with prior knowledge on http://, h2 by ALPN on https://;
                           --connections counts h2 connections, each carrying --streams N
                           requests at once (default 1), every stream timed on its own

load shape
  --rate R                 target requests/s (open loop)
  --stages LIST            a rate that changes: stages of DURATION@RATE, each a step to its rate,
                           or with a trailing ~ a ramp to it over the stage, e.g.
                           "10s@5,30s@50~,20s@50" (sets --duration to their sum)
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
  --kserve                 KServe v2 / Triton gRPC instead of OpenAI (needs --http2): ModelInfer,
                           or with --stream ModelStreamInfer, whose first response message is the
                           TTFT and each message a token; --model names the model, the prompt
                           is sent as raw_input_contents; a grpc-status other than 0 is an error
  --prompt-tokens DIST     fixed:N | uniform:A:B | normal:MEAN:SD | exponential:MEAN (default fixed:128)
  --max-tokens DIST        same forms (default fixed:16)
  --shared-prefix N        first N prompt tokens identical in every request (prefix cache)
  --conversations N        multi-turn chat: each request continues one of N conversations
                           (history grows by a user turn of --prompt-tokens and a reply of
                           --max-tokens), sharing --system-prompts K (default 4) system prompts
                           of --system-tokens T (default 1024); --turns M (default 8) then anew
  --model NAME             (default mock-llm)
  --dataset FILE           replay a ShareGPT file (what vLLM's benchmark takes): each request sends
                           the next conversation's first human turn and asks for as many tokens
                           as its answer had (bytes/4); conversations filtered as vLLM does
                           (4..1024 prompt tokens, at most 2048 with the answer)
  --storage                object-store mix: --objects N --object-size SIZE --put-ratio F --range-ratio F
                           (the objects are PUT through the target first, unless --no-setup: the
                           store already holds them)
gates and output
  --slo LIST               e.g. "e2el_p99<=50ms,ttft_p99<=200ms,error_rate<=0.1%"
                           metrics: ttft_|tpot_|itl_|e2el_ + mean|p50|p90|p95|p99|p999|p9999|max,
                           error_rate, late_rate, request_throughput, goodput (req/s); ops <= < >= >
                           ttft/tpot/e2el upper bounds also define per-request goodput.
  --json F  --csv F  --html F   result files (vLLM-style JSON, per-request CSV, HTML with SVG charts)
  --scenario FILE.yaml     take the `load:` section of a scenario (flags given too override it)
  --scenario-json FILE     print a scenario file as JSON and exit (used by run-scenario)
  --backend-header NAME    the response header naming the backend that answered, for per-backend
                           counts and latencies (default x-mock-backend; behind nginx, e.g. one
                           added with add_header X-Upstream $upstream_addr)
  --label NAME  --seed N  --progress on|off  --quiet  --version
figures
  e2el: end-to-end latency, from the request's intended send time to its last byte; ttft: time
  to first token (first SSE data event); tpot: time per output token after the first; itl:
  inter-token latency (gaps between SSE events); send lag: how late requests went out. All in
  milliseconds; rates as percentages; throughputs in requests or tokens per second.
exit codes
  0  finished and every SLO met (or none given)
  2  bad usage or configuration
  3  finished but an SLO was missed
  4  finished but every request failed (whether or not an SLO was given)
)";

bool flag_takes_value(const std::string& f) {
  static const char* no_value[] = {"--closed", "--stream",  "--storage",      "--quiet",   "--help",
                                   "-h",       "--version", "--allow-remote", "--no-setup",
                                   "--insecure", "--new-connection", "--http2", "--kserve"};
  for (auto* n : no_value)
    if (f == n) return false;
  return true;
}

bool known_flag(const std::string& f) {
  static const char* known[] = {
      "--url",           "--rate",           "--duration",      "--warmup",
      "--arrival",       "--burstiness",     "--connections",   "--threads",
      "--closed",        "--requests",       "--max-pending",   "--timeout",
      "--drain",         "--late-threshold", "--expected-itl",  "--method",
      "--body",          "--openai",         "--stream",        "--prompt-tokens",
      "--max-tokens",    "--shared-prefix",  "--model",         "--storage",
      "--conversations", "--system-prompts", "--system-tokens", "--turns",
      "--objects",       "--object-size",    "--put-ratio",     "--range-ratio",
      "--slo",           "--json",           "--csv",           "--html",
      "--label",         "--seed",           "--progress",      "--quiet",
      "--scenario",      "--header",         "--allow-remote",  "--version",
      "--no-setup",      "--stages",         "--dataset",       "--backend-header",
      "--cacert",        "--insecure",       "--sni",           "--tls-resume",
      "--new-connection", "--http2",         "--streams",       "--kserve"};
  for (auto* k : known)
    if (f == k) return true;
  return false;
}
int usage_error(const std::string& m) {
  std::cerr << "meridian-load: " << m << "\n(see --help)\n";
  return exit_usage;
}

// One flag and its value; the parsers throw std::invalid_argument naming the flag.
struct flag {
  const std::string& name;
  const std::string& value;

  double num() const {
    auto d = parse_double(value);
    if (!d || *d < 0) throw std::invalid_argument("bad number for " + name + ": " + value);
    return *d;
  }
  double dur() const {
    auto d = parse_duration(value);
    if (!d) throw std::invalid_argument("bad duration for " + name + ": " + value);
    return static_cast<double>(d->count()) / 1e9;
  }
  int_dist dist() const {
    auto d = int_dist::parse(value);
    if (!d) throw std::invalid_argument("bad distribution for " + name + ": " + value);
    return *d;
  }
};

// The "load shape" flags; false when x is not one of them.
bool apply_shape_flag(const flag& x, load_config& cfg) {
  const std::string& f = x.name;
  if (f == "--url")
    cfg.url = x.value;
  else if (f == "--cacert")
    cfg.cacert = x.value;
  else if (f == "--insecure")
    cfg.insecure = true;
  else if (f == "--sni")
    cfg.sni = x.value;
  else if (f == "--tls-resume") {
    if (x.value != "on" && x.value != "off")
      throw std::invalid_argument("--tls-resume must be on or off");
    cfg.tls_resume = x.value == "on";
  } else if (f == "--new-connection")
    cfg.new_connection = true;
  else if (f == "--rate")
    cfg.rate = x.num(), cfg.profile_points.clear();
  else if (f == "--stages") {
    double total = 0;
    auto points = parse_stages(x.value, total);
    if (!points)
      throw std::invalid_argument("--stages: expected DURATION@RATE[~],... e.g. 10s@5,30s@50~");
    cfg.profile_points = std::move(*points);
    cfg.duration_s = total;
    cfg.rate = 0;
  } else if (f == "--duration")
    cfg.duration_s = x.dur();
  else if (f == "--warmup")
    cfg.warmup_s = x.dur();
  else if (f == "--arrival") {
    auto k = parse_arrival_kind(x.value);
    if (!k) throw std::invalid_argument("--arrival must be constant|poisson|gamma");
    cfg.arrival = *k;
  } else if (f == "--burstiness")
    cfg.burstiness = x.num();
  else if (f == "--connections")
    cfg.connections = static_cast<int>(x.num());
  else if (f == "--threads")
    cfg.threads = static_cast<int>(x.num());
  else if (f == "--closed")
    cfg.closed = true;
  else if (f == "--http2")
    cfg.http2 = true;
  else if (f == "--streams")
    cfg.streams = static_cast<int>(x.num());
  else if (f == "--requests")
    cfg.max_requests = static_cast<std::uint64_t>(x.num());
  else if (f == "--max-pending")
    cfg.max_pending = static_cast<std::size_t>(x.num());
  else if (f == "--timeout")
    cfg.timeout_s = x.dur();
  else if (f == "--drain")
    cfg.drain_s = x.dur();
  else if (f == "--late-threshold")
    cfg.late_threshold_ms = x.dur() * 1e3;
  else if (f == "--expected-itl")
    cfg.expected_itl_ms = x.dur() * 1e3;
  else
    return false;
  return true;
}

// The "requests" flags; false when x is not one of them.
bool apply_request_flag(const flag& x, load_config& cfg) {
  const std::string& f = x.name;
  const std::string& v = x.value;
  if (f == "--method")
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
  } else if (f == "--kserve")
    cfg.api = openai_api::kserve;
  else if (f == "--stream")
    cfg.stream = true;
  else if (f == "--prompt-tokens")
    cfg.prompt_tokens = x.dist();
  else if (f == "--max-tokens")
    cfg.max_tokens = x.dist();
  else if (f == "--shared-prefix")
    cfg.shared_prefix = static_cast<int>(x.num());
  else if (f == "--conversations")
    cfg.conversations = static_cast<int>(x.num());
  else if (f == "--system-prompts")
    cfg.system_prompts = static_cast<int>(x.num());
  else if (f == "--system-tokens")
    cfg.system_tokens = static_cast<int>(x.num());
  else if (f == "--turns")
    cfg.turns = static_cast<int>(x.num());
  else if (f == "--model")
    cfg.model = v;
  else if (f == "--dataset")
    cfg.dataset_path = v;
  else if (f == "--storage")
    cfg.storage = true;
  else if (f == "--no-setup")
    cfg.storage_setup = false;
  else if (f == "--objects")
    cfg.objects = static_cast<int>(x.num());
  else if (f == "--object-size") {
    auto z = parse_size(v);
    if (!z) throw std::invalid_argument("bad size for --object-size");
    cfg.object_size = *z;
  } else if (f == "--put-ratio")
    cfg.put_ratio = x.num();
  else if (f == "--range-ratio")
    cfg.range_ratio = x.num();
  else
    return false;
  return true;
}

// The "gates and output" flags; false when x is not one of them.
bool apply_output_flag(const flag& x, load_config& cfg) {
  const std::string& f = x.name;
  const std::string& v = x.value;
  if (f == "--slo")
    cfg.slo_text = v;
  else if (f == "--json")
    cfg.json_path = v;
  else if (f == "--csv")
    cfg.csv_path = v;
  else if (f == "--html")
    cfg.html_path = v;
  else if (f == "--label")
    cfg.label = v;
  else if (f == "--backend-header")
    cfg.backend_header = v;
  else if (f == "--seed")
    cfg.seed = static_cast<std::uint64_t>(x.num());
  else if (f == "--progress")
    cfg.progress = v == "on" ? 1 : v == "off" ? 0 : -1;
  else if (f == "--quiet")
    cfg.quiet = true;
  else if (f == "--allow-remote")
    cfg.allow_remote = true;
  else if (f == "--header")
    cfg.headers.push_back(v);
  else
    return false;
  return true;
}

// Handles --help, --scenario-json and --scenario ahead of the other flags (so that flags override
// the scenario); returns the exit code when the command is already complete.
std::optional<int> prescan(const std::vector<std::string>& a, load_config& cfg) {
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i] == "--help" || a[i] == "-h") {
      std::cout << help_text;
      return exit_ok;
    }
    if (a[i] == "--version") {
      std::cout << "meridian-load " << MERIDIAN_VERSION << "\n";
      return exit_ok;
    }
    if (a[i] == "--scenario-json") {
      if (i + 1 >= a.size()) return usage_error("--scenario-json needs a file");
      try {
        std::cout << yaml_file_to_json(a[i + 1]) << "\n";
      } catch (const std::exception& e) {
        return usage_error(e.what());
      }
      return exit_ok;
    }
    if (a[i] == "--scenario") {
      if (i + 1 >= a.size()) return usage_error("--scenario needs a file");
      if (auto e = apply_scenario(a[i + 1], cfg); !e.empty()) return usage_error(e);
    }
  }
  return std::nullopt;
}

// Applies every flag in order; returns an error message, empty when all were good.
std::string apply_flags(const std::vector<std::string>& a, load_config& cfg) {
  for (std::size_t i = 0; i < a.size(); ++i) {
    const std::string& f = a[i];
    std::string v;
    if (f.rfind("--", 0) != 0) return "unexpected argument '" + f + "'";
    if (!known_flag(f)) return "unknown flag " + f;
    if (flag_takes_value(f)) {
      if (i + 1 >= a.size()) return f + " needs a value";
      v = a[++i];
    }
    if (f == "--scenario") continue;
    try {
      const flag x{f, v};
      if (!apply_shape_flag(x, cfg) && !apply_request_flag(x, cfg) && !apply_output_flag(x, cfg))
        throw std::invalid_argument("unknown flag " + f);
    } catch (const std::exception& e) {
      return e.what();
    }
  }
  return {};
}

int run_and_report(const load_config& cfg) {
  run_summary s;
  try {
    s = run_load(cfg);
  } catch (const std::exception& e) {
    return usage_error(std::string("cannot run: ") + e.what());
  }
  if (!cfg.quiet) print_table(s, cfg, stdout);
  std::string err;
  if (!cfg.json_path.empty() && !write_file(cfg.json_path, summary_json(s, cfg) + "\n", err))
    return usage_error(err);
  if (!cfg.csv_path.empty() && !write_file(cfg.csv_path, render_csv(s), err))
    return usage_error(err);
  if (!cfg.html_path.empty() && !write_file(cfg.html_path, render_html(s, cfg), err))
    return usage_error(err);
  std::fflush(stdout);
  if (s.completed == 0 && s.failed > 0) return exit_all_failed;
  return s.slo_pass ? exit_ok : exit_slo_missed;
}

}  // namespace

int load_main(int argc, char** argv) {
  std::vector<std::string> a(argv + 1, argv + argc);
  load_config cfg;
  if (auto done = prescan(a, cfg)) return *done;
  if (auto e = apply_flags(a, cfg); !e.empty()) return usage_error(e);
  if (auto e = cfg.finalize(); !e.empty()) return usage_error(e);
  return run_and_report(cfg);
}

}  // namespace meridian::loadtest
