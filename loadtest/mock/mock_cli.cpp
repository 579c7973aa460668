// Command line of meridian-mock: parses flags into options, starts one mock and waits for
// SIGINT/SIGTERM.
#include <csignal>
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/parse.hpp"
#include "mock/mock.hpp"

namespace meridian::loadtest {

namespace {
const char* usage_text = R"(usage:
  meridian-mock llm --listen 127.0.0.1:9201 [options]
      --threads N               io threads (default 1)
      --grpc-listen ADDR        KServe v2 / Triton gRPC (h2c) on the same engine: ModelInfer,
                                ModelStreamInfer (a message per token), ServerReady, ModelReady,
                                RepositoryIndex; default-max-tokens output tokens per call
      --slots N                 concurrent sequences (batch slots, default 8)
      --prefill-us-per-token F  prefill cost per uncached prompt token (default 50)
      --decode-ms F             decode step with batch 1 (default 10)
      --decode-growth F         extra decode cost per extra running sequence, fraction (default 0.05)
      --cache-blocks N          prefix-cache capacity in 16-token blocks (default 16384)
      --model NAME              served model name (default mock-llm)
      --name ID                 value of the x-mock-backend header (default llm-<port>)
      --default-max-tokens N    output tokens when the request sets none (default 16)
      --error-rate F            fraction answered 500 (default 0)
      --spike-rate F --spike-ms F   latency spikes
      --header-delay-ms F       slow response heads
      --health-delay-ms F       /health answers after a random wait, uniform up to F ms
      --reset-rate F            fraction reset mid-response
      --cut-after N             every stream reset after N tokens (a backend that cuts)
      --keep-generating         do not cancel generation when the client goes away
      --seed N
  meridian-mock storage --listen ADDR [--bandwidth 100MiB] [--threads N] [--max-object 256MiB] [--name ID]
      --conn-bandwidth SIZE     per-connection cap on response bodies, bytes/s (default none)
      --object KEY=SIZE         a read-only synthetic object (repeatable), e.g. /models/w=4GiB;
                                KEY ending in * names every key with that prefix (/cold/*=256MiB)
      --seed N                  the synthetic objects' content and ETag (default 1)
      --fail-after SIZE         after this many body bytes of a GET response, fail it ...
      --fail-mode reset|stall   ... by resetting the connection (default) or sending nothing more
      --fail-count N            only the first N responses fail (default: every one)
  llm and storage also take --tls-cert FILE --tls-key FILE: TLS on --listen (the mock itself
      behind it on a loopback port of its own)
  meridian-mock relay --listen ADDR --to ADDR [--delay 20ms] [--jitter 5ms] [--bandwidth 10MiB] [--control ADDR]
Runtime control: POST /control with a JSON object (llm: on its own port; relay: on --control).
)";

struct args {
  std::vector<std::string> v;
  std::size_t i = 0;
  bool next(std::string& flag) {
    if (i >= v.size()) return false;
    flag = v[i++];
    return true;
  }
  std::string value(const std::string& flag) {
    if (i >= v.size()) throw std::invalid_argument(flag + " needs a value");
    return v[i++];
  }
};

double num(const std::string& flag, const std::string& s) {
  auto d = parse_double(s);
  if (!d || *d < 0) throw std::invalid_argument("bad value for " + flag + ": " + s);
  return *d;
}
double ms(const std::string& flag, const std::string& s) {
  auto d = parse_duration(s.find_first_not_of("0123456789.") == std::string::npos ? s + "ms" : s);
  if (!d) throw std::invalid_argument("bad duration for " + flag + ": " + s);
  return static_cast<double>(d->count()) / 1e6;
}
std::uint64_t size(const std::string& flag, const std::string& s) {
  auto d = parse_size(s);
  if (!d) throw std::invalid_argument("bad size for " + flag + ": " + s);
  return *d;
}

int wait_for_signal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  int sig = 0;
  sigwait(&set, &sig);
  return 0;
}

// The flags of each subcommand; throw std::invalid_argument on unknown flags or bad values.
llm_options llm_flags(args& a) {
  llm_options o;
  std::string f;
  while (a.next(f)) {
    if (f == "--listen")
      o.listen = a.value(f);
    else if (f == "--grpc-listen")
      o.grpc_listen = a.value(f);
    else if (f == "--threads")
      o.threads = static_cast<int>(num(f, a.value(f)));
    else if (f == "--slots")
      o.engine.slots = std::max(1, static_cast<int>(num(f, a.value(f))));
    else if (f == "--prefill-us-per-token")
      o.engine.prefill_us_per_token = num(f, a.value(f));
    else if (f == "--decode-ms")
      o.engine.decode_ms = num(f, a.value(f));
    else if (f == "--decode-growth")
      o.engine.decode_growth = num(f, a.value(f));
    else if (f == "--cache-blocks")
      o.engine.cache_blocks = static_cast<std::size_t>(num(f, a.value(f)));
    else if (f == "--model")
      o.model = a.value(f);
    else if (f == "--name")
      o.name = a.value(f);
    else if (f == "--default-max-tokens")
      o.default_max_tokens = static_cast<int>(num(f, a.value(f)));
    else if (f == "--error-rate")
      o.error_rate = num(f, a.value(f));
    else if (f == "--spike-rate")
      o.spike_rate = num(f, a.value(f));
    else if (f == "--spike-ms")
      o.spike_ms = ms(f, a.value(f));
    else if (f == "--header-delay-ms")
      o.header_delay_ms = ms(f, a.value(f));
    else if (f == "--health-delay-ms")
      o.health_delay_ms = ms(f, a.value(f));
    else if (f == "--reset-rate")
      o.reset_rate = num(f, a.value(f));
    else if (f == "--cut-after")
      o.cut_after = num(f, a.value(f));
    else if (f == "--keep-generating")
      o.stop_on_abandon = false;
    else if (f == "--seed")
      o.seed = static_cast<std::uint64_t>(num(f, a.value(f)));
    else
      throw std::invalid_argument("unknown flag " + f);
  }
  return o;
}

storage_options storage_flags(args& a) {
  storage_options o;
  std::string f;
  while (a.next(f)) {
    if (f == "--listen")
      o.listen = a.value(f);
    else if (f == "--threads")
      o.threads = static_cast<int>(num(f, a.value(f)));
    else if (f == "--bandwidth")
      o.bandwidth = size(f, a.value(f));
    else if (f == "--max-object")
      o.max_object = size(f, a.value(f));
    else if (f == "--name")
      o.name = a.value(f);
    else if (f == "--conn-bandwidth")
      o.conn_bandwidth = size(f, a.value(f));
    else if (f == "--object") {
      auto v = a.value(f);
      auto eq = v.find('=');
      if (eq == std::string::npos || eq == 0 || v[0] != '/')
        throw std::invalid_argument("--object: expected /KEY=SIZE, got '" + v + "'");
      o.synthetic.emplace_back(v.substr(0, eq), size(f, v.substr(eq + 1)));
    } else if (f == "--seed")
      o.seed = static_cast<std::uint64_t>(num(f, a.value(f)));
    else if (f == "--fail-after")
      o.fail_after = size(f, a.value(f));
    else if (f == "--fail-count")
      o.fail_count = static_cast<std::uint64_t>(num(f, a.value(f)));
    else if (f == "--fail-mode") {
      auto v = a.value(f);
      if (v != "reset" && v != "stall")
        throw std::invalid_argument("--fail-mode: expected reset or stall, got '" + v + "'");
      o.fail_stall = v == "stall";
    } else
      throw std::invalid_argument("unknown flag " + f);
  }
  return o;
}

relay_options relay_flags(args& a) {
  relay_options o;
  std::string f;
  while (a.next(f)) {
    if (f == "--listen")
      o.listen = a.value(f);
    else if (f == "--to")
      o.to = a.value(f);
    else if (f == "--control")
      o.control = a.value(f);
    else if (f == "--delay")
      o.delay_ms = ms(f, a.value(f));
    else if (f == "--jitter")
      o.jitter_ms = ms(f, a.value(f));
    else if (f == "--bandwidth")
      o.bandwidth = size(f, a.value(f));
    else if (f == "--seed")
      o.seed = static_cast<std::uint64_t>(num(f, a.value(f)));
    else
      throw std::invalid_argument("unknown flag " + f);
  }
  return o;
}

// --tls-cert and --tls-key, taken out of the flags (llm, storage).
std::optional<tls_front_options> tls_flags(args& a) {
  tls_front_options t;
  std::vector<std::string> rest;
  for (std::size_t i = 0; i < a.v.size(); ++i) {
    const auto& f = a.v[i];
    if (f != "--tls-cert" && f != "--tls-key") {
      rest.push_back(f);
      continue;
    }
    if (i + 1 >= a.v.size()) throw std::invalid_argument(f + " needs a value");
    (f == "--tls-cert" ? t.cert : t.key) = a.v[++i];
  }
  a.v = std::move(rest);
  if (t.cert.empty() && t.key.empty()) return std::nullopt;
  if (t.cert.empty() || t.key.empty())
    throw std::invalid_argument("--tls-cert and --tls-key go together");
  return t;
}

// Starts `m` on --listen, or with TLS there and the mock on a loopback port of its own; runs
// until SIGINT/SIGTERM.
template <typename Mock, typename Options>
int serve(const char* kind, Options o, std::optional<tls_front_options> tls) {
  if (tls) {
    tls->listen = o.listen;
    tls->threads = o.threads;
    // Named by the port clients reach it on, as without TLS.
    auto port = o.listen.substr(o.listen.rfind(':') + 1);
    if (o.name.empty() && port != "0") o.name = std::string(kind) + "-" + port;
    o.listen = "127.0.0.1:0";
  }
  Mock m(std::move(o));
  auto port = m.start();
  std::unique_ptr<tls_front> front;
  if (tls) {
    front = std::make_unique<tls_front>(*tls);
    port = front->start(port);
  }
  std::fprintf(stderr, "meridian-mock %s listening on port %u%s\n", kind, port,
               tls ? " (TLS)" : "");
  if constexpr (requires { m.grpc_port(); })
    if (m.grpc_port() != 0)
      std::fprintf(stderr, "meridian-mock %s gRPC (h2c) on port %u\n", kind, m.grpc_port());
  wait_for_signal();
  if (front) front->stop();
  m.stop();
  return 0;
}

// Runs one subcommand until SIGINT/SIGTERM; throws on bad flags or a failed start.
int run(const std::string& cmd, args& a) {
  if (cmd == "llm") {
    auto tls = tls_flags(a);
    return serve<llm_mock>("llm", llm_flags(a), std::move(tls));
  }
  if (cmd == "storage") {
    auto tls = tls_flags(a);
    return serve<storage_mock>("storage", storage_flags(a), std::move(tls));
  }
  if (cmd == "relay") {
    relay r(relay_flags(a));
    auto port = r.start();
    std::fprintf(stderr, "meridian-mock relay listening on port %u (control %u)\n", port,
                 r.control_port());
    wait_for_signal();
    r.stop();
    return 0;
  }
  std::cerr << "unknown subcommand '" << cmd << "'\n" << usage_text;
  return 2;
}
}  // namespace

int mock_main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::cout << usage_text;
    return argc < 2 ? 2 : 0;
  }
  // Worker threads inherit this mask, so only sigwait() sees the signals.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::string cmd = argv[1];
  args a{std::vector<std::string>(argv + 2, argv + argc)};
  try {
    return run(cmd, a);
  } catch (const std::exception& e) {
    std::cerr << "meridian-mock: " << e.what() << "\n";
    return 2;
  }
}

}  // namespace meridian::loadtest
