// The LLM mock's shared state (llm_mock::impl): options, the engine model, fault settings and the
// counters behind /metrics and /control. The engine model and `active` belong to the engine
// executor (io context 0); the rest is atomic, guarded by mu, or set before the threads start.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/net.hpp"
#include "mock/engine_model.hpp"
#include "mock/mock.hpp"

namespace meridian::loadtest {

namespace llm {

inline constexpr double ttft_buckets[] = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08,
                                          0.1,   0.25,  0.5,  0.75, 1.0,  2.5,  5.0,
                                          7.5,   10.0,  20.0, 40.0, 80.0};
inline constexpr std::size_t ttft_bucket_n = sizeof(ttft_buckets) / sizeof(ttft_buckets[0]);

inline std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(steady::now().time_since_epoch())
      .count();
}

// Shared by a connection coroutine (its executor) and the engine loop, which only touches it by
// posting.
struct gen_request {
  explicit gen_request(const asio::any_io_executor& ex) : conn_ex(ex), notify(ex) {}
  asio::any_io_executor conn_ex;
  asio::steady_timer notify;  // cancelled to wake the connection
  // conn side
  int tokens_ready = 0;
  int cached_tokens = 0;  // of the prompt, known once the first token is ready
  bool finished = false;
  bool abandoned = false;
  // engine side
  std::uint64_t engine_id = 0;
  steady::time_point arrived;
  int prompt_tokens = 0;
  int output_tokens = 0;
  std::vector<std::uint64_t> blocks;
};

struct faults {
  double error_rate, spike_rate, spike_ms, header_delay_ms, reset_rate;
  bool stop_on_abandon;
  double health_delay_ms;
  double cut_after;  // every stream reset after this many tokens; < 0: never
};

}  // namespace llm

struct llm_mock::impl {
  explicit impl(llm_options o) : opt(std::move(o)), model(opt.engine), pool(opt.threads) {
    f = {opt.error_rate, opt.spike_rate,      opt.spike_ms,        opt.header_delay_ms,
         opt.reset_rate, opt.stop_on_abandon, opt.health_delay_ms, opt.cut_after};
  }

  llm_options opt;
  engine_model model;  // engine executor only
  io_pool pool;
  std::vector<std::shared_ptr<tcp::acceptor>> acceptors, grpc_acceptors;
  std::unique_ptr<asio::steady_timer> wake;  // engine executor; cancelled when work arrives
  std::unordered_map<std::uint64_t, std::shared_ptr<llm::gen_request>>
      active;  // engine executor only
  std::string backend_header;
  std::string static_response;
  std::string name;
  std::atomic<bool> stopping{false};

  mutable std::mutex mu;  // guards f and engine param copy
  llm::faults f;
  std::atomic<std::int64_t> stall_until{0};
  // Wall-clock seconds of the (emulated) process start: /metrics' process_start_time_seconds,
  // set anew by a control "restart" (which also empties the prefix cache).
  std::atomic<double> started_at{0};

  std::atomic<std::uint64_t> c_requests{0}, c_static{0}, c_abandoned{0}, c_gen_stopped{0},
      c_errors{0}, c_resets{0}, c_completed{0}, c_prompt_tokens{0}, c_gen_tokens{0};
  std::atomic<std::uint64_t> g_waiting{0}, g_running{0}, g_cached_tokens{0};
  std::atomic<double> g_kv{0};
  std::atomic<std::uint64_t> ttft_counts[llm::ttft_bucket_n + 1] = {};
  std::atomic<std::uint64_t> ttft_count{0};
  std::atomic<double> ttft_sum{0};

  asio::any_io_executor engine_ex() { return pool.at(0).get_executor(); }
  llm::faults snapshot() const {
    std::lock_guard lk(mu);
    return f;
  }
  void publish_gauges() {
    g_waiting.store(model.waiting(), std::memory_order_relaxed);
    g_running.store(model.running(), std::memory_order_relaxed);
    g_kv.store(model.kv_usage(), std::memory_order_relaxed);
    g_cached_tokens.store(model.cached_tokens_total(), std::memory_order_relaxed);
  }
  void observe_ttft(double s) {
    std::size_t i = 0;
    while (i < llm::ttft_bucket_n && s > llm::ttft_buckets[i]) ++i;
    ttft_counts[i].fetch_add(1, std::memory_order_relaxed);
    ttft_count.fetch_add(1, std::memory_order_relaxed);
    double cur = ttft_sum.load(std::memory_order_relaxed);
    while (!ttft_sum.compare_exchange_weak(cur, cur + s, std::memory_order_relaxed)) {
    }
  }
};

namespace llm {
using impl_t = llm_mock::impl;
inline double wall_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}
}  // namespace llm

}  // namespace meridian::loadtest
