#include "meridian/probe/load_reading.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>

using meridian::probe::extract_load;
using meridian::probe::load_mapping;
using meridian::probe::load_reading;

namespace {
load_reading read(std::string_view text) {
  return extract_load(text, load_mapping::defaults());
}

constexpr std::string_view vllm_text =
    R"(# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 3.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 7.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.4213
# HELP vllm:request_queue_time_seconds Histogram of time spent in WAITING phase for request.
# TYPE vllm:request_queue_time_seconds histogram
vllm:request_queue_time_seconds_bucket{engine="0",le="0.3",model_name="meta-llama/Llama-3.1-8B-Instruct"} 40.0
vllm:request_queue_time_seconds_bucket{engine="0",le="+Inf",model_name="meta-llama/Llama-3.1-8B-Instruct"} 52.0
vllm:request_queue_time_seconds_count{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 52.0
vllm:request_queue_time_seconds_sum{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 9.75
)";

// vLLM before the v1 engine's rename, two engines (data parallel) behind one endpoint.
constexpr std::string_view old_vllm_text =
    R"(# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{engine="0",model_name="mistralai/Mistral-7B-Instruct-v0.3"} 0.125
vllm:gpu_cache_usage_perc{engine="1",model_name="mistralai/Mistral-7B-Instruct-v0.3"} 0.875
# HELP vllm:cpu_cache_usage_perc CPU KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:cpu_cache_usage_perc gauge
vllm:cpu_cache_usage_perc{engine="0",model_name="mistralai/Mistral-7B-Instruct-v0.3"} 0.99
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="mistralai/Mistral-7B-Instruct-v0.3"} 2.0
vllm:num_requests_waiting{engine="1",model_name="mistralai/Mistral-7B-Instruct-v0.3"} 5.0
# TYPE vllm:num_requests_swapped gauge
vllm:num_requests_swapped{engine="0",model_name="mistralai/Mistral-7B-Instruct-v0.3"} 4.0
)";

constexpr std::string_view sglang_text =
    R"(# HELP sglang:num_running_reqs The number of running requests.
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{engine_type="unified",model_name="Qwen/Qwen2.5-7B-Instruct",pp_rank="0",tp_rank="0"} 12.0
# HELP sglang:num_queue_reqs The number of requests in the waiting queue.
# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{engine_type="unified",model_name="Qwen/Qwen2.5-7B-Instruct",pp_rank="0",tp_rank="0"} 4.0
# HELP sglang:token_usage The token usage.
# TYPE sglang:token_usage gauge
sglang:token_usage{engine_type="unified",model_name="Qwen/Qwen2.5-7B-Instruct",pp_rank="0",tp_rank="0"} 0.28
# HELP sglang:gen_throughput The generation throughput (token/s).
# TYPE sglang:gen_throughput gauge
sglang:gen_throughput{engine_type="unified",model_name="Qwen/Qwen2.5-7B-Instruct",pp_rank="0",tp_rank="0"} 345.6
)";

// metrics-exporter-prometheus (Rust): no HELP, unlabelled gauges, summaries as quantiles.
constexpr std::string_view tgi_text = R"(# TYPE tgi_queue_size gauge
tgi_queue_size 6
# TYPE tgi_batch_current_size gauge
tgi_batch_current_size 16
# TYPE tgi_batch_current_max_tokens gauge
tgi_batch_current_max_tokens 12045
# TYPE tgi_request_duration summary
tgi_request_duration{quantile="0.5"} 1.2
tgi_request_duration{quantile="0.99"} 4.9
tgi_request_duration_sum 2291.4
tgi_request_duration_count 1203
# TYPE tgi_request_count counter
tgi_request_count 1207
)";

constexpr std::string_view triton_text =
    R"(# HELP nv_inference_request_success Number of successful inference requests, all batch sizes
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="resnet50",version="1"} 4512
nv_inference_request_success{model="bert",version="2"} 120
# HELP nv_inference_pending_request_count Instantaneous number of pending requests awaiting execution per-model.
# TYPE nv_inference_pending_request_count gauge
nv_inference_pending_request_count{model="resnet50",version="1"} 3
nv_inference_pending_request_count{model="bert",version="2"} 9
# HELP nv_gpu_utilization GPU utilization rate [0.0 - 1.0)
# TYPE nv_gpu_utilization gauge
nv_gpu_utilization{gpu_uuid="GPU-2d0b1a3c-5e6f-7a8b-9c0d-1e2f3a4b5c6d"} 0.37
)";
}  // namespace

TEST_CASE("extract_load reads vLLM") {
  auto r = read(vllm_text);
  CHECK(r.waiting == 7.0);
  CHECK(r.running == 3.0);
  CHECK(r.kv_usage == doctest::Approx(0.4213));
  CHECK(r.samples == 7);
  CHECK(r.malformed == 0);
  CHECK(r.any());
}

TEST_CASE("extract_load reads older vLLM and takes the fullest engine's KV cache") {
  auto r = read(old_vllm_text);
  CHECK(r.waiting == 7.0);  // both engines
  CHECK_FALSE(r.running);
  CHECK(r.kv_usage == 0.875);  // the CPU cache (swap space) is not the KV cache
}

TEST_CASE("extract_load reads SGLang, TGI and Triton") {
  auto s = read(sglang_text);
  CHECK(s.waiting == 4.0);
  CHECK(s.running == 12.0);
  CHECK(s.kv_usage == doctest::Approx(0.28));

  auto t = read(tgi_text);
  CHECK(t.waiting == 6.0);
  CHECK(t.running == 16.0);
  CHECK_FALSE(t.kv_usage);
  CHECK(t.samples == 8);

  // Triton reports a queue per model; the backend's queue is all of them.
  auto n = read(triton_text);
  CHECK(n.waiting == 12.0);
  CHECK_FALSE(n.running);
  CHECK_FALSE(n.kv_usage);
}

TEST_CASE("extract_load sums waiting and running over models, takes the max of kv_usage") {
  auto r = read(R"(vllm:num_requests_waiting{model_name="a"} 2
vllm:num_requests_waiting{model_name="b"} 3.5
vllm:num_requests_running{model_name="a"} 1
vllm:num_requests_running{model_name="b"} 0
vllm:kv_cache_usage_perc{model_name="a"} 0.5
vllm:kv_cache_usage_perc{model_name="b"} 0.25
)");
  CHECK(r.waiting == 5.5);
  CHECK(r.running == 1.0);
  CHECK(r.kv_usage == 0.5);
}

TEST_CASE("extract_load: an idle backend reads as zeros, not as missing signals") {
  auto r = read(R"(vllm:num_requests_waiting{model_name="a"} 0.0
vllm:num_requests_running{model_name="a"} 0.0
vllm:kv_cache_usage_perc{model_name="a"} 0.0
)");
  CHECK(r.waiting == 0.0);
  CHECK(r.running == 0.0);
  CHECK(r.kv_usage == 0.0);
  CHECK(r.any());
}

TEST_CASE("extract_load matches exact names only") {
  auto r = read(R"(vllm:num_requests_waiting_bucket{le="+Inf"} 9
vllm:num_requests_waiting_total 9
vllm:num_requests_waiting_count 9
tgi_queue_size_sum 9
xvllm:num_requests_running 9
sglang:token_usage_ratio 0.9
VLLM:NUM_REQUESTS_WAITING 9
)");
  CHECK_FALSE(r.waiting);
  CHECK_FALSE(r.running);
  CHECK_FALSE(r.kv_usage);
  CHECK_FALSE(r.any());
  CHECK(r.samples == 7);
}

TEST_CASE("extract_load ignores NaN, infinite and negative samples") {
  auto r = read(R"(vllm:num_requests_waiting{engine="0"} NaN
vllm:num_requests_waiting{engine="1"} +Inf
vllm:num_requests_waiting{engine="2"} -1
vllm:num_requests_waiting{engine="3"} 4
vllm:num_requests_running{engine="0"} -Inf
vllm:num_requests_running{engine="1"} -0.0
vllm:kv_cache_usage_perc{engine="0"} NaN
vllm:kv_cache_usage_perc{engine="1"} -0.5
vllm:kv_cache_usage_perc{engine="2"} 0.3
)");
  CHECK(r.waiting == 4.0);
  REQUIRE(r.running);
  CHECK(*r.running == 0.0);
  CHECK_FALSE(std::signbit(*r.running));
  CHECK(r.kv_usage == 0.3);

  // Nothing usable at all: the signal is missing, not zero.
  auto none = read("vllm:num_requests_waiting NaN\nvllm:kv_cache_usage_perc -1\n");
  CHECK_FALSE(none.waiting);
  CHECK_FALSE(none.kv_usage);
  CHECK_FALSE(none.any());
  CHECK(none.samples == 2);
}

TEST_CASE("extract_load clamps kv_usage to 1 and saturates sums") {
  CHECK(read("vllm:kv_cache_usage_perc 1.7\n").kv_usage == 1.0);
  CHECK(read("sglang:token_usage 1\nsglang:token_usage 3e10\n").kv_usage == 1.0);
  auto r = read("tgi_queue_size 1.7e308\ntgi_queue_size 1.7e308\n");
  CHECK(r.waiting == std::numeric_limits<double>::max());
}

TEST_CASE("extract_load with a custom mapping") {
  load_mapping m;
  m.waiting = {"my_queue_depth", "other_queue"};
  m.kv_usage = {"my_kv"};
  auto r = extract_load(R"(my_queue_depth{shard="a"} 3
other_queue 4
my_kv 0.6
vllm:num_requests_waiting 100
vllm:num_requests_running 100
)",
                        m);
  CHECK(r.waiting == 7.0);
  CHECK_FALSE(r.running);  // no names listed
  CHECK(r.kv_usage == 0.6);
  CHECK(r.samples == 5);

  auto empty = extract_load(vllm_text, load_mapping{});
  CHECK_FALSE(empty.any());
  CHECK(empty.samples == 7);
}

TEST_CASE("extract_load on garbage, empty and damaged bodies") {
  auto html = read("<html><body><h1>503 Service Unavailable</h1></body></html>\n");
  CHECK_FALSE(html.any());
  CHECK(html.samples == 0);
  CHECK(html.malformed == 1);

  auto empty = read("");
  CHECK_FALSE(empty.any());
  CHECK(empty.samples == 0);
  CHECK(empty.malformed == 0);

  // A malformed line costs only itself; CRLF and a missing final newline change nothing.
  auto damaged = read(
      "vllm:num_requests_waiting{model_name=\"a} 2\r\n"
      "vllm:num_requests_waiting{model_name=\"b\"} 3\r\n"
      "vllm:num_requests_running{model_name=\"b\"} 1 1700000000000");
  CHECK(damaged.waiting == 3.0);
  CHECK(damaged.running == 1.0);
  CHECK(damaged.samples == 2);
  CHECK(damaged.malformed == 1);

  // Cut mid-file: whatever was complete still counts.
  auto cut = read(vllm_text.substr(0, vllm_text.find("0.4213")));
  CHECK(cut.waiting == 7.0);
  CHECK(cut.running == 3.0);
  CHECK_FALSE(cut.kv_usage);
  CHECK(cut.malformed == 1);
}

TEST_CASE("extract_load reads the process start time, which tells a restart") {
  auto r = extract_load(
      "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds 1.7654321e+09\n"
      "vllm:num_requests_running{model_name=\"m\"} 2\n",
      load_mapping::defaults());
  REQUIRE(r.started);
  CHECK(*r.started == doctest::Approx(1.7654321e9));
  CHECK(r.running == 2);
  CHECK_FALSE(extract_load("vllm:num_requests_running 2\n", load_mapping::defaults())
                  .started);
}
