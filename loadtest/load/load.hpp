// meridian-load: configuration, the run driver and the merged results; run_load() blocks the
// calling thread while its own io threads drive the load, and returns once every worker has joined.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/parse.hpp"
#include "load/arrival.hpp"
#include "load/histogram.hpp"
#include "load/slo.hpp"

namespace meridian::loadtest {

// The request kind: plain HTTP, an OpenAI API, or KServe v2 gRPC (ModelInfer, or with --stream
// ModelStreamInfer; over --http2 only).
enum class openai_api { none, chat, completions, embeddings, kserve };

struct load_config {
  std::string url = "http://127.0.0.1:8080/";
  std::string host;  // filled by finalize()
  std::uint16_t port = 0;
  std::string path;
  double rate = 0;
  std::vector<rate_profile::point> profile_points;  // from a scenario; empty = constant `rate`
  double duration_s = 10;
  double warmup_s = 0;
  arrival_kind arrival = arrival_kind::poisson;
  double burstiness = 1;
  int connections = 64;
  int threads = 1;
  bool closed = false;
  std::uint64_t max_requests = 0;  // 0 = no cap
  std::size_t max_pending = 100000;
  double late_threshold_ms = 1;
  // Token events that share one read count as clumped when tokens were due further apart than 1 ms:
  // due spacing is the request's own TPOT or this floor, so fully buffered streams are caught too.
  double expected_itl_ms = 2;

  openai_api api = openai_api::none;
  bool stream = false;
  int_dist prompt_tokens = *int_dist::parse("fixed:128");
  int_dist max_tokens = *int_dist::parse("fixed:16");
  int shared_prefix = 0;  // tokens shared by every prompt
  // Multi-turn chat (prefix-heavy traffic): each request continues one of `conversations`,
  // chosen uniformly; they share `system_prompts` system prompts of `system_tokens` tokens;
  // each turn adds a user message of prompt_tokens and the assistant's reply of max_tokens to
  // the history, and after `turns` turns the conversation starts over. 0: off.
  int conversations = 0;
  int system_prompts = 4;
  int system_tokens = 1024;
  int turns = 8;
  std::string model = "mock-llm";
  // Replayed prompts (--dataset, a ShareGPT file): each request sends the next conversation's
  // first human turn and asks for as many tokens as its answer had (bytes / 4). Empty: off.
  struct dataset_entry {
    std::string prompt;  // JSON-escaped
    int prompt_tokens = 0;
    int output_tokens = 0;
  };
  std::string dataset_path;
  std::shared_ptr<const std::vector<dataset_entry>> dataset;
  // The response header that names the backend that answered (per-backend counts and
  // latencies): the mock's own, or e.g. one an nginx in front adds with $upstream_addr.
  std::string backend_header = "x-mock-backend";

  std::string method = "GET";
  std::string body;                  // plain HTTP mode
  std::vector<std::string> headers;  // --header "Name: value", on every request
  bool allow_remote = false;         // --allow-remote: a target off this machine

  // https:// targets: the server verified against cacert (or not at all: insecure), SNI,
  // sessions resumed by new connections, and a new connection per request (handshake tests).
  bool tls = false;
  std::string cacert;
  bool insecure = false;
  std::string sni;
  bool tls_resume = true;
  bool new_connection = false;

  // --http2: `connections` h2 connections (h2c with prior knowledge on http://, ALPN h2 on
  // https://), each carrying up to `streams` requests at once as streams.
  bool http2 = false;
  int streams = 1;

  bool storage = false;       // object-store mix against url's path prefix
  bool storage_setup = true;  // PUT the objects through the target before the run
  int objects = 64;
  std::uint64_t object_size = 64 * 1024;
  double put_ratio = 0.1;
  double range_ratio = 0.3;

  std::string slo_text;
  std::vector<slo> slos;
  std::string json_path, csv_path, html_path;
  std::string label;
  double timeout_s = 30;
  double drain_s = 10;
  std::uint64_t seed = 1;
  int progress = -1;  // -1: when stdout is a terminal
  bool quiet = false;

  // Validates and derives host/port/path; returns an error message or empty.
  std::string finalize();
  rate_profile profile() const;
};

// A ShareGPT file (a JSON array of {"conversations": [{"from": "human", "value": ...},
// {"from": "gpt", "value": ...}, ...]}): each usable conversation's first turn and its answer's
// length. Null with `why` when the file cannot be used.
std::shared_ptr<const std::vector<load_config::dataset_entry>> load_sharegpt(
    const std::string& path, std::string& why);
// "--stages 10s@5,20s@40~,30s@40": stages of a duration at a rate, each a step to its rate, or
// with ~ a ramp to it from the rate before; the points of the rate profile and (total_s) the
// stages' whole length. Nullopt when malformed.
std::optional<std::vector<rate_profile::point>> parse_stages(std::string_view s, double& total_s);

struct request_record {
  double intended_s;  // since start
  float send_lag_ms;
  float ttft_ms;
  float e2el_ms;
  std::uint16_t status;  // 0 = transport error
  std::uint16_t backend;
  std::uint32_t output_tokens;
  std::uint8_t error;  // error_kind
};

enum class error_kind : std::uint8_t {
  none,
  http_status,
  connect,
  transport,
  timeout,
  unsent,
  bad_response,
  grpc_status  // a gRPC call that ended with a grpc-status other than 0 (OK)
};
const char* error_kind_name(error_kind e);

struct interval_stats {
  double start_s = 0;
  std::uint64_t completed = 0, failed = 0, output_tokens = 0;
  std::unique_ptr<histogram> e2el, ttft, tpot;  // by intended send time
};

struct run_summary {
  std::string label;
  double duration_s = 0;  // start to the last completion
  double configured_duration_s = 0;
  std::uint64_t completed = 0, failed = 0, sent = 0, late = 0, unsent = 0, good = 0,
                warmup_skipped = 0;
  std::map<std::string, std::uint64_t> errors;  // by kind
  std::map<int, std::uint64_t> status_counts;
  std::uint64_t input_tokens = 0, output_tokens = 0, token_events = 0, clumped_events = 0;
  histogram ttft, tpot, itl, e2el, send_lag;
  histogram handshake;  // TLS: connect done -> handshake done, per new connection
  std::uint64_t handshakes = 0, resumed = 0, handshake_failures = 0;
  std::string handshake_error;  // the first failure's reason
  std::vector<std::pair<std::string, std::uint64_t>> per_backend;
  double interval_s = 1;
  std::vector<interval_stats> timeline;
  std::vector<request_record> records;
  std::vector<std::string> backend_names;  // index for records
  std::vector<slo_result> slo_results;
  bool slo_pass = true;

  double request_throughput() const {
    return duration_s > 0 ? static_cast<double>(completed) / duration_s : 0;
  }
  double goodput() const { return duration_s > 0 ? static_cast<double>(good) / duration_s : 0; }
  double error_rate() const {
    auto n = completed + failed;
    return n ? static_cast<double>(failed) / static_cast<double>(n) : 0;
  }
};

run_summary run_load(const load_config& cfg);
void evaluate_slos(const load_config& cfg, run_summary& s);

// Whole command line, returning the documented exit code (0 ok, 2 usage/config, 3 SLO missed).
int load_main(int argc, char** argv);

}  // namespace meridian::loadtest
