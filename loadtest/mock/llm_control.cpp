#include "mock/llm_control.hpp"

#include <boost/json.hpp>
#include <cstdio>

#include "mock/llm_openai.hpp"

namespace meridian::loadtest::llm {

namespace json = boost::json;

std::string metrics_text(const impl_t* self) {
  std::string o;
  const std::string lbl = "{model_name=" + json_quote(self->opt.model) + "}";
  auto line = [&](const char* help, const char* type, const std::string& name, double v) {
    o += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + name + lbl + " ";
    char b[64];
    std::snprintf(b, sizeof b, "%.17g\n", v);
    o += b;
  };
  auto ld = [](const std::atomic<std::uint64_t>& a) {
    return static_cast<double>(a.load(std::memory_order_relaxed));
  };
  char start[64];
  std::snprintf(start, sizeof start, "%.3f", self->started_at.load());
  o += "# HELP process_start_time_seconds Start time of the process since unix epoch in "
       "seconds.\n# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds " +
       std::string(start) + "\n";
  line("Number of requests waiting to be processed.", "gauge", "vllm:num_requests_waiting",
       ld(self->g_waiting));
  line("Number of requests in model execution batches.", "gauge", "vllm:num_requests_running",
       ld(self->g_running));
  line("KV-cache usage. 1 means 100 percent usage.", "gauge", "vllm:kv_cache_usage_perc",
       self->g_kv.load());
  line("GPU KV-cache usage (deprecated name).", "gauge", "vllm:gpu_cache_usage_perc",
       self->g_kv.load());
  line("Number of prefill tokens processed.", "counter", "vllm:prompt_tokens_total",
       ld(self->c_prompt_tokens));
  line("Number of generation tokens processed.", "counter", "vllm:generation_tokens_total",
       ld(self->c_gen_tokens));
  line("Prompt tokens served from the prefix cache.", "counter", "vllm:prefix_cache_hits_total",
       ld(self->g_cached_tokens));
  line("Count of successfully processed requests.", "counter", "vllm:request_success_total",
       ld(self->c_completed));
  o += "# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.\n"
       "# TYPE vllm:time_to_first_token_seconds histogram\n";
  std::uint64_t cum = 0;
  const std::string mn = "model_name=" + json_quote(self->opt.model);
  for (std::size_t i = 0; i <= ttft_bucket_n; ++i) {
    cum += self->ttft_counts[i].load(std::memory_order_relaxed);
    char le[32];
    if (i < ttft_bucket_n)
      std::snprintf(le, sizeof le, "%g", ttft_buckets[i]);
    else
      std::snprintf(le, sizeof le, "+Inf");
    o += "vllm:time_to_first_token_seconds_bucket{" + mn + ",le=\"" + le + "\"} " +
         std::to_string(cum) + "\n";
  }
  char sum[64];
  std::snprintf(sum, sizeof sum, "%.9g", self->ttft_sum.load());
  o += "vllm:time_to_first_token_seconds_sum{" + mn + "} " + sum + "\n";
  o += "vllm:time_to_first_token_seconds_count{" + mn + "} " +
       std::to_string(self->ttft_count.load()) + "\n";
  auto counter = [&](const char* name, const char* help, const std::atomic<std::uint64_t>& v) {
    o += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " counter\n" + name +
         " " + std::to_string(v.load()) + "\n";
  };
  counter("mock_requests_total", "Generation requests received.", self->c_requests);
  counter("mock_abandoned_total", "Requests whose client closed the connection before completion.",
          self->c_abandoned);
  counter("mock_generation_stopped_total", "Abandoned requests whose generation was cancelled.",
          self->c_gen_stopped);
  counter("mock_errors_injected_total", "Injected 500 responses.", self->c_errors);
  counter("mock_resets_injected_total", "Injected connection resets.", self->c_resets);
  counter("mock_static_requests_total", "GET /static requests.", self->c_static);
  return o;
}

std::string control_text(const impl_t* self) {
  json::object o;
  auto fs = self->snapshot();
  engine_params ep;
  {
    std::lock_guard lk(self->mu);
    ep = self->opt.engine;
  }
  auto stall_left = std::max<std::int64_t>(0, self->stall_until.load() - now_ns());
  o["name"] = self->name;
  o["model"] = self->opt.model;
  o["settings"] = {{"error_rate", fs.error_rate},
                   {"spike_rate", fs.spike_rate},
                   {"spike_ms", fs.spike_ms},
                   {"header_delay_ms", fs.header_delay_ms},
                   {"reset_rate", fs.reset_rate},
                   {"cut_after", fs.cut_after},
                   {"stop_on_abandon", fs.stop_on_abandon},
                   {"health_delay_ms", fs.health_delay_ms},
                   {"stall_remaining_ms", static_cast<double>(stall_left) / 1e6},
                   {"slots", ep.slots},
                   {"prefill_us_per_token", ep.prefill_us_per_token},
                   {"decode_ms", ep.decode_ms},
                   {"decode_growth", ep.decode_growth},
                   {"cache_blocks", ep.cache_blocks}};
  o["counters"] = {{"requests_total", self->c_requests.load()},
                   {"completed_total", self->c_completed.load()},
                   {"abandoned_total", self->c_abandoned.load()},
                   {"generation_stopped_total", self->c_gen_stopped.load()},
                   {"errors_injected_total", self->c_errors.load()},
                   {"resets_injected_total", self->c_resets.load()},
                   {"static_requests_total", self->c_static.load()},
                   {"prompt_tokens_total", self->c_prompt_tokens.load()},
                   {"generation_tokens_total", self->c_gen_tokens.load()},
                   {"prefix_cache_hit_tokens_total", self->g_cached_tokens.load()}};
  o["engine"] = {{"waiting", self->g_waiting.load()},
                 {"running", self->g_running.load()},
                 {"kv_cache_usage", self->g_kv.load()}};
  return json::serialize(o);
}

bool apply_control(impl_t* self, std::string_view body, std::string& err) {
  error_code ec;
  json::value v = json::parse(body, ec);
  if (ec || !v.is_object()) {
    err = "control body must be a JSON object";
    return false;
  }
  auto num = [&](const json::value& x, double& out) {
    if (x.is_number()) {
      out = x.to_number<double>();
      return out >= 0;
    }
    return false;
  };
  faults nf;
  engine_params ep;
  {
    std::lock_guard lk(self->mu);
    nf = self->f;
    ep = self->opt.engine;
  }
  double stall_ms = -1;
  bool engine_changed = false, restart = false;
  for (auto& [k, x] : v.as_object()) {
    double d = 0;
    bool ok = true;
    if (k == "stop_on_abandon") {
      ok = x.is_bool();
      if (ok) nf.stop_on_abandon = x.as_bool();
    } else if (k == "restart") {
      ok = x.is_bool();
      if (ok) restart = x.as_bool();
    } else if (!num(x, d)) {
      ok = false;
    } else if (k == "error_rate")
      nf.error_rate = d;
    else if (k == "spike_rate")
      nf.spike_rate = d;
    else if (k == "spike_ms")
      nf.spike_ms = d;
    else if (k == "header_delay_ms")
      nf.header_delay_ms = d;
    else if (k == "health_delay_ms")
      nf.health_delay_ms = d;
    else if (k == "reset_rate")
      nf.reset_rate = d;
    else if (k == "cut_after")
      nf.cut_after = d;
    else if (k == "stall_ms")
      stall_ms = d;
    else if (k == "slots")
      ep.slots = std::max(1, static_cast<int>(d)), engine_changed = true;
    else if (k == "prefill_us_per_token")
      ep.prefill_us_per_token = d, engine_changed = true;
    else if (k == "decode_ms")
      ep.decode_ms = d, engine_changed = true;
    else if (k == "decode_growth")
      ep.decode_growth = d, engine_changed = true;
    else if (k == "cache_blocks")
      ep.cache_blocks = static_cast<std::size_t>(d), engine_changed = true;
    else {
      err = "unknown control key '" + std::string(k) + "'";
      return false;
    }
    if (!ok) {
      err = "bad value for '" + std::string(k) + "'";
      return false;
    }
  }
  {
    std::lock_guard lk(self->mu);
    self->f = nf;
    self->opt.engine = ep;
  }
  if (stall_ms >= 0)
    self->stall_until.store(stall_ms > 0 ? now_ns() + static_cast<std::int64_t>(stall_ms * 1e6)
                                         : 0);
  if (restart) self->started_at.store(wall_seconds());
  if (engine_changed || stall_ms >= 0 || restart)
    asio::post(self->engine_ex(), [self, ep, engine_changed, restart] {
      if (engine_changed) self->model.set_params(ep);
      if (restart) self->model.clear_cache();
      self->wake->cancel();
    });
  return true;
}

}  // namespace meridian::loadtest::llm
