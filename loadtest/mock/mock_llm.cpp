// OpenAI-compatible engine emulator: HTTP/1.1 front end on per-thread io_contexts, one engine loop
// on context 0 that owns the engine_model; the two sides talk only by posting to each other's
// executor.
#include <sys/socket.h>

#include <boost/json.hpp>
#include <cmath>
#include <mutex>
#include <random>
#include <unordered_map>

#include "common/net.hpp"
#include "mock/mock.hpp"

namespace meridian::loadtest {

namespace json = boost::json;

namespace {

constexpr double ttft_buckets[] = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25, 0.5,
                                   0.75,  1.0,   2.5,  5.0,  7.5,  10.0, 20.0, 40.0, 80.0};
constexpr std::size_t ttft_bucket_n = sizeof(ttft_buckets) / sizeof(ttft_buckets[0]);

constexpr std::string_view vocab[] = {" the", " of", " and", " to",   " in", " is", " it", " that",
                                      " for", " on", " was", " with", " as", " at", " by", " an"};

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(steady::now().time_since_epoch())
      .count();
}

std::string json_quote(std::string_view s) {
  return json::serialize(json::string(s));
}

std::mt19937_64& thread_rng(std::uint64_t seed) {
  thread_local std::mt19937_64 rng(seed ^ std::hash<std::thread::id>{}(std::this_thread::get_id()));
  return rng;
}

enum class api { chat, completions, embeddings };

// Shared by a connection coroutine (its executor) and the engine loop, which only touches it by
// posting.
struct gen_request {
  explicit gen_request(const asio::any_io_executor& ex) : conn_ex(ex), notify(ex) {}
  asio::any_io_executor conn_ex;
  asio::steady_timer notify;  // cancelled to wake the connection
  // conn side
  int tokens_ready = 0;
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
};

}  // namespace

struct llm_mock::impl {
  explicit impl(llm_options o) : opt(std::move(o)), model(opt.engine), pool(opt.threads) {
    f = {opt.error_rate,      opt.spike_rate, opt.spike_ms,
         opt.header_delay_ms, opt.reset_rate, opt.stop_on_abandon};
  }

  llm_options opt;
  engine_model model;  // engine executor only
  io_pool pool;
  std::vector<std::shared_ptr<tcp::acceptor>> acceptors;
  std::unique_ptr<asio::steady_timer> wake;  // engine executor; cancelled when work arrives
  std::unordered_map<std::uint64_t, std::shared_ptr<gen_request>> active;  // engine executor only
  std::string backend_header;
  std::string static_response;
  std::string name;
  std::atomic<bool> stopping{false};

  mutable std::mutex mu;  // guards f and engine param copy
  faults f;
  std::atomic<std::int64_t> stall_until{0};

  std::atomic<std::uint64_t> c_requests{0}, c_static{0}, c_abandoned{0}, c_gen_stopped{0},
      c_errors{0}, c_resets{0}, c_completed{0}, c_prompt_tokens{0}, c_gen_tokens{0};
  std::atomic<std::uint64_t> g_waiting{0}, g_running{0}, g_cached_tokens{0};
  std::atomic<double> g_kv{0};
  std::atomic<std::uint64_t> ttft_counts[ttft_bucket_n + 1] = {};
  std::atomic<std::uint64_t> ttft_count{0};
  std::atomic<double> ttft_sum{0};

  asio::any_io_executor engine_ex() { return pool.at(0).get_executor(); }
  faults snapshot() const {
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
    while (i < ttft_bucket_n && s > ttft_buckets[i]) ++i;
    ttft_counts[i].fetch_add(1, std::memory_order_relaxed);
    ttft_count.fetch_add(1, std::memory_order_relaxed);
    double cur = ttft_sum.load(std::memory_order_relaxed);
    while (!ttft_sum.compare_exchange_weak(cur, cur + s, std::memory_order_relaxed)) {
    }
  }

  std::string metrics_text() const;
  std::string control_text() const;
  bool apply(std::string_view body, std::string& err);
};

namespace {

using impl_t = llm_mock::impl;

asio::awaitable<void> sleep_until(steady::time_point tp) {
  asio::steady_timer t(co_await asio::this_coro::executor);
  t.expires_at(tp);
  co_await t.async_wait(use_nothrow);
}

asio::awaitable<void> wait_stall(impl_t* self) {
  auto s = self->stall_until.load(std::memory_order_relaxed);
  if (s != 0 && s > now_ns()) co_await sleep_until(steady::time_point(std::chrono::nanoseconds(s)));
}

asio::awaitable<void> engine_loop(impl_t* self) {
  std::vector<engine_event> events;
  asio::steady_timer iter(self->engine_ex());
  steady::time_point prev_end{};
  while (!self->stopping.load()) {
    auto now = steady::now();
    auto stall = steady::time_point(std::chrono::nanoseconds(self->stall_until.load()));
    if (stall > now) {
      self->wake->expires_at(stall);
      co_await self->wake->async_wait(use_nothrow);
      continue;
    }
    if (self->model.idle()) {
      self->wake->expires_after(std::chrono::seconds(1));  // bounded: re-checks stop and stall
      co_await self->wake->async_wait(use_nothrow);
      continue;
    }
    auto d = self->model.begin_iteration();
    self->publish_gauges();
    // Back-to-back iterations are scheduled from the previous end so timer slack does not
    // accumulate.
    auto start = prev_end > now - std::chrono::milliseconds(1) ? prev_end : now;
    prev_end = start + d;
    iter.expires_at(prev_end);
    co_await iter.async_wait(use_nothrow);
    events.clear();
    self->model.end_iteration(events);
    auto t = steady::now();
    for (auto& e : events) {
      auto it = self->active.find(e.id);
      if (it == self->active.end()) continue;
      auto r = it->second;
      self->c_gen_tokens.fetch_add(1, std::memory_order_relaxed);
      if (e.first) self->observe_ttft(std::chrono::duration<double>(t - r->arrived).count());
      if (e.finished) self->active.erase(it);
      asio::post(r->conn_ex, [r, fin = e.finished] {
        ++r->tokens_ready;
        if (fin) r->finished = true;
        r->notify.cancel();
      });
    }
    self->publish_gauges();
  }
}

void submit_to_engine(impl_t* self, std::shared_ptr<gen_request> r) {
  asio::post(self->engine_ex(), [self, r] {
    r->engine_id = self->model.submit(r->prompt_tokens, r->output_tokens, std::move(r->blocks));
    self->active.emplace(r->engine_id, r);
    self->publish_gauges();
    self->wake->cancel();
  });
}

void cancel_in_engine(impl_t* self, std::shared_ptr<gen_request> r, bool count_stop) {
  asio::post(self->engine_ex(), [self, r, count_stop] {
    self->active.erase(r->engine_id);
    if (self->model.cancel(r->engine_id) && count_stop)
      self->c_gen_stopped.fetch_add(1, std::memory_order_relaxed);
    self->publish_gauges();
  });
}

// Notices a client that hangs up while its request waits or streams: the socket turns readable
// and a peek returns 0 (or an error).
void watch_for_hangup(std::shared_ptr<timed_socket> ts, std::shared_ptr<gen_request> r) {
  ts->sock.async_wait(tcp::socket::wait_read, [ts, r](error_code ec) {
    if (ec || r->finished) return;
    char c;
    auto n = ::recv(ts->sock.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
      r->abandoned = true;
      r->notify.cancel();
    }
  });
}

void append_error_json(std::string& out, int status, std::string_view message,
                       std::string_view type, std::string_view extra_headers, bool keep_alive) {
  std::string body = "{\"error\":{\"message\":" + json_quote(message) + ",\"type\":\"" +
                     std::string(type) + "\",\"param\":null,\"code\":" + std::to_string(status) +
                     "}}";
  append_response(out, status, "application/json", body, extra_headers, keep_alive);
}

struct parsed_request {
  std::string prompt;
  std::string model;
  int max_tokens = -1;
  bool stream = false;
  bool include_usage = false;
  int inputs = 1;  // embeddings
};

bool parse_generation(std::string_view body, api kind, parsed_request& pr, std::string& err) {
  error_code ec;
  json::value v = json::parse(body, ec);
  if (ec || !v.is_object()) {
    err = "request body is not a JSON object";
    return false;
  }
  auto& o = v.as_object();
  if (auto m = o.if_contains("model"); m && m->is_string()) pr.model = std::string(m->as_string());
  auto int_field = [&](const char* k) -> int {
    auto x = o.if_contains(k);
    if (!x) return -1;
    if (x->is_int64()) return static_cast<int>(x->as_int64());
    if (x->is_uint64()) return static_cast<int>(x->as_uint64());
    return -1;
  };
  pr.max_tokens = int_field("max_completion_tokens");
  if (pr.max_tokens < 0) pr.max_tokens = int_field("max_tokens");
  if (auto s = o.if_contains("stream"); s && s->is_bool()) pr.stream = s->as_bool();
  if (auto so = o.if_contains("stream_options"); so && so->is_object())
    if (auto iu = so->as_object().if_contains("include_usage"); iu && iu->is_bool())
      pr.include_usage = iu->as_bool();
  auto add_text = [&](const json::value& c) {
    if (c.is_string())
      pr.prompt.append(c.as_string().data(), c.as_string().size());
    else if (c.is_array())
      for (auto& part : c.as_array())
        if (part.is_object())
          if (auto t = part.as_object().if_contains("text"); t && t->is_string())
            pr.prompt.append(t->as_string().data(), t->as_string().size());
  };
  if (kind == api::chat) {
    auto msgs = o.if_contains("messages");
    if (!msgs || !msgs->is_array() || msgs->as_array().empty()) {
      err = "'messages' must be a non-empty array";
      return false;
    }
    for (auto& m : msgs->as_array())
      if (m.is_object())
        if (auto c = m.as_object().if_contains("content")) add_text(*c);
  } else if (kind == api::completions) {
    auto p = o.if_contains("prompt");
    if (!p) {
      err = "'prompt' is required";
      return false;
    }
    if (p->is_array()) {
      for (auto& x : p->as_array()) {
        if (x.is_string())
          pr.prompt.append(x.as_string().data(), x.as_string().size());
        else
          pr.prompt.append("tok ");  // token ids count as ~one token each
      }
    } else {
      add_text(*p);
    }
  } else {
    auto in = o.if_contains("input");
    if (!in) {
      err = "'input' is required";
      return false;
    }
    if (in->is_array()) {
      pr.inputs = static_cast<int>(std::max<std::size_t>(1, in->as_array().size()));
      for (auto& x : in->as_array())
        if (x.is_string()) pr.prompt.append(x.as_string().data(), x.as_string().size());
    } else {
      add_text(*in);
    }
  }
  return true;
}

struct chunk_writer {
  std::string id_json;     // "\"chatcmpl-...\""
  std::string model_json;  // quoted
  std::string created;
  api kind;

  void prefix(std::string& o, const char* object) const {
    o.append("data: {\"id\":").append(id_json).append(",\"object\":\"").append(object);
    o.append("\",\"created\":").append(created).append(",\"model\":").append(model_json);
  }
  void role(std::string& o) const {
    prefix(o, "chat.completion.chunk");
    o.append(
        ",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
        "\"logprobs\":null,"
        "\"finish_reason\":null}]}\n\n");
  }
  void token(std::string& o, std::string_view text, const char* finish) const {
    if (kind == api::chat) {
      prefix(o, "chat.completion.chunk");
      o.append(",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"")
          .append(text)
          .append("\"},\"logprobs\":null,");
    } else {
      prefix(o, "text_completion");
      o.append(",\"choices\":[{\"index\":0,\"text\":\"")
          .append(text)
          .append("\",\"logprobs\":null,");
    }
    if (finish)
      o.append("\"finish_reason\":\"").append(finish).append("\",\"stop_reason\":null}]}\n\n");
    else
      o.append("\"finish_reason\":null}]}\n\n");
  }
  void usage(std::string& o, int p, int c) const {
    prefix(o, kind == api::chat ? "chat.completion.chunk" : "text_completion");
    o.append(",\"choices\":[],\"usage\":{\"prompt_tokens\":").append(std::to_string(p));
    o.append(",\"total_tokens\":").append(std::to_string(p + c));
    o.append(",\"completion_tokens\":").append(std::to_string(c)).append("}}\n\n");
  }
};

// Handles one generation request; returns false when the connection must close.
asio::awaitable<bool> handle_generation(impl_t* self, std::shared_ptr<timed_socket> ts, api kind,
                                        std::string body, bool keep_alive) {
  std::string out;
  const std::string& hdr = self->backend_header;
  parsed_request pr;
  std::string err;
  self->c_requests.fetch_add(1, std::memory_order_relaxed);
  if (!parse_generation(body, kind, pr, err)) {
    append_error_json(out, 400, err, "BadRequestError", hdr, keep_alive);
    ts->arm(std::chrono::seconds(30));
    auto [ec, n] = co_await asio::async_write(ts->sock, asio::buffer(out), use_nothrow);
    co_return !ec && keep_alive;
  }
  auto fs = self->snapshot();
  auto& rng = thread_rng(self->opt.seed);
  std::uniform_real_distribution<double> u01(0, 1);
  const auto arrived = steady::now();

  co_await wait_stall(self);
  if (fs.spike_rate > 0 && u01(rng) < fs.spike_rate)
    co_await sleep_until(steady::now() +
                         std::chrono::microseconds(static_cast<std::int64_t>(fs.spike_ms * 1000)));
  if (fs.error_rate > 0 && u01(rng) < fs.error_rate) {
    self->c_errors.fetch_add(1, std::memory_order_relaxed);
    append_error_json(out, 500, "injected failure", "InternalServerError", hdr, keep_alive);
    ts->arm(std::chrono::seconds(30));
    auto [ec, n] = co_await asio::async_write(ts->sock, asio::buffer(out), use_nothrow);
    co_return !ec && keep_alive;
  }

  const int prompt_tokens = std::max<int>(1, static_cast<int>(pr.prompt.size() / 4));
  const bool explicit_max = pr.max_tokens > 0;
  int output_tokens = explicit_max ? std::min(pr.max_tokens, self->opt.max_tokens_cap)
                                   : self->opt.default_max_tokens;
  if (kind == api::embeddings) output_tokens = 1;

  auto r = std::make_shared<gen_request>(ts->sock.get_executor());
  r->arrived = arrived;
  r->prompt_tokens = prompt_tokens;
  r->output_tokens = output_tokens;
  r->blocks = prefix_block_hashes(pr.prompt, self->model.params().block_tokens);
  self->c_prompt_tokens.fetch_add(static_cast<std::uint64_t>(prompt_tokens),
                                  std::memory_order_relaxed);
  submit_to_engine(self, r);
  watch_for_hangup(ts, r);

  int reset_after = -1;
  if (fs.reset_rate > 0 && u01(rng) < fs.reset_rate)
    reset_after = std::uniform_int_distribution<int>(0, std::max(0, output_tokens / 2))(rng);

  const auto deadline = arrived + std::chrono::microseconds(
                                      static_cast<std::int64_t>(self->opt.request_timeout_s * 1e6));
  ts->arm_at(deadline + std::chrono::seconds(5));
  bool header_sent = false;
  int sent = 0;
  chunk_writer cw;
  cw.kind = kind;
  static std::atomic<std::uint64_t> seq{1};
  char idbuf[48];
  std::snprintf(idbuf, sizeof idbuf, "\"%s-%016llx\"",
                kind == api::chat          ? "chatcmpl"
                : kind == api::completions ? "cmpl"
                                           : "embd",
                static_cast<unsigned long long>(seq.fetch_add(1) * 0x9E3779B97F4A7C15ull));
  cw.id_json = idbuf;
  cw.model_json = json_quote(pr.model.empty() ? self->opt.model : pr.model);
  cw.created = std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count());
  const char* finish = explicit_max ? "length" : "stop";
  bool ok = true;

  const bool streaming = pr.stream && kind != api::embeddings;
  while (true) {
    while (!r->abandoned && !r->finished && (r->tokens_ready == sent || !streaming)) {
      if (steady::now() >= deadline) break;
      r->notify.expires_at(deadline);
      co_await r->notify.async_wait(use_nothrow);
    }
    if (r->abandoned) break;
    if (!r->finished && (r->tokens_ready == sent || !streaming)) {  // deadline
      ok = false;
      break;
    }
    if (!streaming) break;
    out.clear();
    if (!header_sent) {
      if (fs.header_delay_ms > 0)
        co_await sleep_until(steady::now() + std::chrono::microseconds(static_cast<std::int64_t>(
                                                 fs.header_delay_ms * 1000)));
      append_chunked_head(out, 200, "text/event-stream; charset=utf-8", hdr);
      header_sent = true;
      if (kind == api::chat) {
        std::string ev;
        cw.role(ev);
        append_chunk(out, ev);
      }
    }
    std::string ev;
    while (sent < r->tokens_ready) {
      ++sent;
      const bool last = sent == output_tokens;
      cw.token(ev, vocab[static_cast<std::size_t>(sent) % std::size(vocab)].substr(0),
               last ? finish : nullptr);
      if (last && pr.include_usage) cw.usage(ev, prompt_tokens, output_tokens);
      if (last) ev.append("data: [DONE]\n\n");
    }
    append_chunk(out, ev);
    if (r->finished) append_last_chunk(out);
    if (reset_after >= 0 && sent >= reset_after) {
      self->c_resets.fetch_add(1, std::memory_order_relaxed);
      cancel_in_engine(self, r, false);
      r->finished = true;
      ts->close_hard();
      co_return false;
    }
    auto [ec, n] = co_await asio::async_write(ts->sock, asio::buffer(out), use_nothrow);
    if (ec) {
      r->abandoned = true;
      break;
    }
    if (r->finished) break;
  }

  if (r->abandoned || !ok) {
    if (r->abandoned) self->c_abandoned.fetch_add(1, std::memory_order_relaxed);
    cancel_in_engine(self, r, self->snapshot().stop_on_abandon || !ok);
    r->finished = true;
    co_return false;
  }
  r->finished = true;  // makes the pending hang-up watch a no-op
  error_code cec;
  ts->sock.cancel(cec);

  if (!pr.stream || kind == api::embeddings) {
    if (reset_after >= 0) {
      self->c_resets.fetch_add(1, std::memory_order_relaxed);
      ts->close_hard();
      co_return false;
    }
    if (fs.header_delay_ms > 0)
      co_await sleep_until(steady::now() + std::chrono::microseconds(static_cast<std::int64_t>(
                                               fs.header_delay_ms * 1000)));
    std::string b;
    if (kind == api::embeddings) {
      b = "{\"object\":\"list\",\"data\":[";
      for (int i = 0; i < pr.inputs; ++i) {
        if (i) b += ',';
        b += "{\"object\":\"embedding\",\"index\":" + std::to_string(i) + ",\"embedding\":[";
        for (int d = 0; d < self->opt.embedding_dim; ++d) {
          if (d) b += ',';
          b += std::to_string(std::sin(d + i + prompt_tokens) * 0.5);
        }
        b += "]}";
      }
      b += "],\"model\":" + cw.model_json +
           ",\"usage\":{\"prompt_tokens\":" + std::to_string(prompt_tokens) +
           ",\"total_tokens\":" + std::to_string(prompt_tokens) + "}}";
    } else {
      std::string text;
      for (int i = 1; i <= output_tokens; ++i)
        text.append(vocab[static_cast<std::size_t>(i) % std::size(vocab)]);
      b = "{\"id\":" + cw.id_json + ",\"object\":\"" +
          (kind == api::chat ? "chat.completion" : "text_completion") +
          "\",\"created\":" + cw.created + ",\"model\":" + cw.model_json +
          ",\"choices\":[{\"index\":0,";
      if (kind == api::chat)
        b += "\"message\":{\"role\":\"assistant\",\"content\":\"" + text + "\",\"tool_calls\":[]},";
      else
        b += "\"text\":\"" + text + "\",";
      b += std::string("\"logprobs\":null,\"finish_reason\":\"") + finish +
           "\",\"stop_reason\":null}],";
      b += "\"usage\":{\"prompt_tokens\":" + std::to_string(prompt_tokens) +
           ",\"total_tokens\":" + std::to_string(prompt_tokens + output_tokens) +
           ",\"completion_tokens\":" + std::to_string(output_tokens) +
           "},\"prompt_logprobs\":null}";
    }
    out.clear();
    append_response(out, 200, "application/json", b, hdr, keep_alive);
    ts->arm(std::chrono::seconds(30));
    auto [ec, n] = co_await asio::async_write(ts->sock, asio::buffer(out), use_nothrow);
    if (ec) co_return false;
  }
  self->c_completed.fetch_add(1, std::memory_order_relaxed);
  co_return keep_alive;
}

asio::awaitable<void> serve_conn(impl_t* self, std::shared_ptr<timed_socket> ts) {
  ts->start_watch();
  error_code sec;
  ts->sock.set_option(tcp::no_delay(true), sec);
  read_buffer rb;
  request_head head;
  std::string body, out;
  const auto idle =
      std::chrono::microseconds(static_cast<std::int64_t>(self->opt.idle_timeout_s * 1e6));
  while (!self->stopping.load(std::memory_order_relaxed)) {
    std::size_t head_len = 0;
    const bool got = co_await read_request(ts, rb, head, body, head_len, idle, 64 << 20);
    if (!got) break;
    std::string_view target = head.target;
    if (auto q = target.find('?'); q != std::string_view::npos) target = target.substr(0, q);
    const bool keep = head.keep_alive;
    const bool get = head.method == "GET";
    const bool post = head.method == "POST";
    if (get && target == "/static") {
      rb.consume(head_len);
      self->c_static.fetch_add(1, std::memory_order_relaxed);
      co_await wait_stall(self);
      ts->arm(std::chrono::seconds(30));
      auto [ec, n] =
          co_await asio::async_write(ts->sock, asio::buffer(self->static_response), use_nothrow);
      if (ec || !keep) break;
      continue;
    }
    api kind{};
    bool gen = false;
    if (post && target == "/v1/chat/completions")
      kind = api::chat, gen = true;
    else if (post && target == "/v1/completions")
      kind = api::completions, gen = true;
    else if (post && target == "/v1/embeddings")
      kind = api::embeddings, gen = true;
    if (gen) {
      rb.consume(head_len);
      const bool open = co_await handle_generation(self, ts, kind, std::move(body), keep);
      if (!open) break;
      body = std::string();
      continue;
    }
    out.clear();
    std::string_view hdr = self->backend_header;
    if (target == "/control" && (get || post)) {
      std::string err;
      if (post && !self->apply(body, err))
        append_error_json(out, 400, err, "BadRequestError", hdr, keep);
      else
        append_response(out, 200, "application/json", self->control_text(), hdr, keep);
    } else if (target == "/health" && get) {
      co_await wait_stall(self);
      append_response(out, 200, "text/plain", "", hdr, keep);
    } else if (target == "/metrics" && get) {
      co_await wait_stall(self);
      append_response(out, 200, "text/plain; version=0.0.4", self->metrics_text(), hdr, keep);
    } else if (target == "/v1/models" && get) {
      auto m = json_quote(self->opt.model);
      std::string b =
          "{\"object\":\"list\",\"data\":[{\"id\":" + m +
          ",\"object\":\"model\",\"created\":0,\"owned_by\":\"meridian-mock\",\"root\":" + m +
          ",\"parent\":null,\"max_model_len\":" + std::to_string(self->opt.max_tokens_cap) + "}]}";
      append_response(out, 200, "application/json", b, hdr, keep);
    } else {
      append_error_json(out, 404, "Not Found", "NotFoundError", hdr, keep);
    }
    rb.consume(head_len);
    ts->arm(std::chrono::seconds(30));
    auto [ec, n] = co_await asio::async_write(ts->sock, asio::buffer(out), use_nothrow);
    if (ec || !keep) break;
  }
  ts->stop();
  error_code ec;
  ts->sock.shutdown(tcp::socket::shutdown_send, ec);
  ts->sock.close(ec);
}

asio::awaitable<void> accept_loop(impl_t* self, std::shared_ptr<tcp::acceptor> acc) {
  while (!self->stopping.load()) {
    auto [ec, sock] = co_await acc->async_accept(use_nothrow);
    if (ec) {
      if (ec == asio::error::operation_aborted || !acc->is_open()) co_return;
      continue;
    }
    auto ts = std::make_shared<timed_socket>(std::move(sock));
    asio::co_spawn(acc->get_executor(), serve_conn(self, ts), asio::detached);
  }
}

}  // namespace

std::string llm_mock::impl::metrics_text() const {
  std::string o;
  const std::string lbl = "{model_name=" + json_quote(opt.model) + "}";
  auto line = [&](const char* help, const char* type, const std::string& name, double v) {
    o += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + name + lbl + " ";
    char b[64];
    std::snprintf(b, sizeof b, "%.17g\n", v);
    o += b;
  };
  auto ld = [](const std::atomic<std::uint64_t>& a) {
    return static_cast<double>(a.load(std::memory_order_relaxed));
  };
  line("Number of requests waiting to be processed.", "gauge", "vllm:num_requests_waiting",
       ld(g_waiting));
  line("Number of requests in model execution batches.", "gauge", "vllm:num_requests_running",
       ld(g_running));
  line("KV-cache usage. 1 means 100 percent usage.", "gauge", "vllm:kv_cache_usage_perc",
       g_kv.load());
  line("GPU KV-cache usage (deprecated name).", "gauge", "vllm:gpu_cache_usage_perc", g_kv.load());
  line("Number of prefill tokens processed.", "counter", "vllm:prompt_tokens_total",
       ld(c_prompt_tokens));
  line("Number of generation tokens processed.", "counter", "vllm:generation_tokens_total",
       ld(c_gen_tokens));
  line("Prompt tokens served from the prefix cache.", "counter", "vllm:prefix_cache_hits_total",
       ld(g_cached_tokens));
  line("Count of successfully processed requests.", "counter", "vllm:request_success_total",
       ld(c_completed));
  o += "# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.\n"
       "# TYPE vllm:time_to_first_token_seconds histogram\n";
  std::uint64_t cum = 0;
  const std::string mn = "model_name=" + json_quote(opt.model);
  for (std::size_t i = 0; i <= ttft_bucket_n; ++i) {
    cum += ttft_counts[i].load(std::memory_order_relaxed);
    char le[32];
    if (i < ttft_bucket_n)
      std::snprintf(le, sizeof le, "%g", ttft_buckets[i]);
    else
      std::snprintf(le, sizeof le, "+Inf");
    o += "vllm:time_to_first_token_seconds_bucket{" + mn + ",le=\"" + le + "\"} " +
         std::to_string(cum) + "\n";
  }
  char sum[64];
  std::snprintf(sum, sizeof sum, "%.9g", ttft_sum.load());
  o += "vllm:time_to_first_token_seconds_sum{" + mn + "} " + sum + "\n";
  o += "vllm:time_to_first_token_seconds_count{" + mn + "} " + std::to_string(ttft_count.load()) +
       "\n";
  auto counter = [&](const char* name, const char* help, const std::atomic<std::uint64_t>& v) {
    o += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " counter\n" + name +
         " " + std::to_string(v.load()) + "\n";
  };
  counter("mock_requests_total", "Generation requests received.", c_requests);
  counter("mock_abandoned_total", "Requests whose client closed the connection before completion.",
          c_abandoned);
  counter("mock_generation_stopped_total", "Abandoned requests whose generation was cancelled.",
          c_gen_stopped);
  counter("mock_errors_injected_total", "Injected 500 responses.", c_errors);
  counter("mock_resets_injected_total", "Injected connection resets.", c_resets);
  counter("mock_static_requests_total", "GET /static requests.", c_static);
  return o;
}

std::string llm_mock::impl::control_text() const {
  json::object o;
  auto fs = snapshot();
  engine_params ep;
  {
    std::lock_guard lk(mu);
    ep = opt.engine;
  }
  auto stall_left = std::max<std::int64_t>(0, stall_until.load() - now_ns());
  o["name"] = name;
  o["model"] = opt.model;
  o["settings"] = {{"error_rate", fs.error_rate},
                   {"spike_rate", fs.spike_rate},
                   {"spike_ms", fs.spike_ms},
                   {"header_delay_ms", fs.header_delay_ms},
                   {"reset_rate", fs.reset_rate},
                   {"stop_on_abandon", fs.stop_on_abandon},
                   {"stall_remaining_ms", static_cast<double>(stall_left) / 1e6},
                   {"slots", ep.slots},
                   {"prefill_us_per_token", ep.prefill_us_per_token},
                   {"decode_ms", ep.decode_ms},
                   {"decode_growth", ep.decode_growth},
                   {"cache_blocks", ep.cache_blocks}};
  o["counters"] = {{"requests_total", c_requests.load()},
                   {"completed_total", c_completed.load()},
                   {"abandoned_total", c_abandoned.load()},
                   {"generation_stopped_total", c_gen_stopped.load()},
                   {"errors_injected_total", c_errors.load()},
                   {"resets_injected_total", c_resets.load()},
                   {"static_requests_total", c_static.load()},
                   {"prompt_tokens_total", c_prompt_tokens.load()},
                   {"generation_tokens_total", c_gen_tokens.load()},
                   {"prefix_cache_hit_tokens_total", g_cached_tokens.load()}};
  o["engine"] = {{"waiting", g_waiting.load()},
                 {"running", g_running.load()},
                 {"kv_cache_usage", g_kv.load()}};
  return json::serialize(o);
}

bool llm_mock::impl::apply(std::string_view body, std::string& err) {
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
    std::lock_guard lk(mu);
    nf = f;
    ep = opt.engine;
  }
  double stall_ms = -1;
  bool engine_changed = false;
  for (auto& [k, x] : v.as_object()) {
    double d = 0;
    bool ok = true;
    if (k == "stop_on_abandon") {
      ok = x.is_bool();
      if (ok) nf.stop_on_abandon = x.as_bool();
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
    else if (k == "reset_rate")
      nf.reset_rate = d;
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
    std::lock_guard lk(mu);
    f = nf;
    opt.engine = ep;
  }
  if (stall_ms >= 0)
    stall_until.store(stall_ms > 0 ? now_ns() + static_cast<std::int64_t>(stall_ms * 1e6) : 0);
  if (engine_changed || stall_ms >= 0)
    asio::post(engine_ex(), [this, ep, engine_changed] {
      if (engine_changed) model.set_params(ep);
      wake->cancel();
    });
  return true;
}

llm_mock::llm_mock(llm_options o) : impl_(std::make_unique<impl>(std::move(o))) {}
llm_mock::~llm_mock() {
  stop();
}

std::uint16_t llm_mock::start() {
  auto& s = *impl_;
  s.acceptors = open_acceptors(s.pool, parse_endpoint(s.opt.listen));
  const auto port = s.acceptors.front()->local_endpoint().port();
  s.name = s.opt.name.empty() ? "llm-" + std::to_string(port) : s.opt.name;
  s.backend_header = "x-mock-backend: " + s.name + "\r\n";
  s.static_response.clear();
  append_response(s.static_response, 200, "text/plain", "Hello, World!", s.backend_header, true);
  s.wake = std::make_unique<asio::steady_timer>(s.engine_ex());
  asio::co_spawn(s.engine_ex(), engine_loop(&s), asio::detached);
  for (auto& a : s.acceptors) asio::co_spawn(a->get_executor(), accept_loop(&s, a), asio::detached);
  s.pool.start();
  return port;
}

void llm_mock::stop() {
  if (!impl_ || impl_->stopping.exchange(true)) return;
  impl_->pool.stop();
  impl_->pool.join();
}

std::string llm_mock::control_json() const {
  return impl_->control_text();
}
bool llm_mock::apply_control(std::string_view j, std::string& err) {
  return impl_->apply(j, err);
}

}  // namespace meridian::loadtest
