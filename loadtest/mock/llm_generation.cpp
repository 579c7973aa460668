#include "mock/llm_generation.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <optional>
#include <random>
#include <thread>

#include "mock/llm_engine.hpp"

namespace meridian::loadtest::llm {

namespace {

std::mt19937_64& thread_rng(std::uint64_t seed) {
  thread_local std::mt19937_64 rng(seed ^ std::hash<std::thread::id>{}(std::this_thread::get_id()));
  return rng;
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

// One generation request's reply while it is produced; lives in handle_generation's frame.
struct generation {
  std::shared_ptr<gen_request> r;
  parsed_request pr;
  std::optional<text_generator> text;  // from the prompt, once parsed
  api kind{};
  faults fs{};
  chunk_writer cw;
  const char* finish = "stop";
  int prompt_tokens = 0;
  int output_tokens = 0;
  int reset_after = -1;  // injected reset after this many tokens; -1 = none
  int sent = 0;          // tokens written so far
  bool header_sent = false;
  bool streaming = false;
  bool ok = true;  // false once the request deadline passed
  bool keep_alive = true;
  steady::time_point deadline;
};

asio::awaitable<bool> write_reply(std::shared_ptr<timed_socket> ts, std::string out,
                                  bool keep_alive) {
  ts->arm(std::chrono::seconds(30));
  auto [ec, n] = co_await asio::async_write(ts->sock, asio::buffer(out), use_nothrow);
  co_return !ec && keep_alive;
}

asio::awaitable<void> header_delay(const generation* g) {
  if (g->fs.header_delay_ms > 0)
    co_await sleep_until(steady::now() + std::chrono::microseconds(static_cast<std::int64_t>(
                                             g->fs.header_delay_ms * 1000)));
}

// Sizes the request, queues it on the engine, draws the reset fault and prepares the chunk writer.
void start_generation(impl_t* self, const std::shared_ptr<timed_socket>& ts, generation& g,
                      steady::time_point arrived, std::mt19937_64& rng,
                      std::uniform_real_distribution<double>& u01) {
  const auto kind = g.kind;
  const auto& pr = g.pr;
  const auto& fs = g.fs;
  g.prompt_tokens = std::max<int>(1, static_cast<int>(pr.prompt.size() / 4));
  const bool explicit_max = pr.max_tokens > 0;
  g.output_tokens = explicit_max ? std::min(pr.max_tokens, self->opt.max_tokens_cap)
                                 : self->opt.default_max_tokens;
  if (kind == api::embeddings) g.output_tokens = 1;

  auto& r = g.r;
  r = std::make_shared<gen_request>(ts->sock.get_executor());
  r->arrived = arrived;
  r->prompt_tokens = g.prompt_tokens;
  r->output_tokens = g.output_tokens;
  r->blocks = prefix_block_hashes(pr.prompt, self->model.params().block_tokens);
  self->c_prompt_tokens.fetch_add(static_cast<std::uint64_t>(g.prompt_tokens),
                                  std::memory_order_relaxed);
  submit_to_engine(self, r);
  watch_for_hangup(ts, r);

  if (fs.reset_rate > 0 && u01(rng) < fs.reset_rate)
    g.reset_after = std::uniform_int_distribution<int>(0, std::max(0, g.output_tokens / 2))(rng);
  if (fs.cut_after >= 0 && pr.stream && kind != api::embeddings && fs.cut_after < g.output_tokens)
    g.reset_after = static_cast<int>(fs.cut_after);

  g.deadline = arrived + std::chrono::microseconds(
                             static_cast<std::int64_t>(self->opt.request_timeout_s * 1e6));
  ts->arm_at(g.deadline + std::chrono::seconds(5));
  auto& cw = g.cw;
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
  g.finish = explicit_max ? "length" : "stop";
  g.streaming = pr.stream && kind != api::embeddings;
}

// Waits until there are tokens to stream (unstreamed: until generation ends), the client leaves, or
// the deadline passes.
asio::awaitable<void> wait_for_tokens(generation* g) {
  auto& r = g->r;
  while (!r->abandoned && !r->finished && (r->tokens_ready == g->sent || !g->streaming)) {
    if (steady::now() >= g->deadline) break;
    r->notify.expires_at(g->deadline);
    co_await r->notify.async_wait(use_nothrow);
  }
}

void append_stream_head(impl_t* self, generation* g, std::string& out) {
  append_chunked_head(out, 200, "text/event-stream; charset=utf-8", self->backend_header);
  g->header_sent = true;
  if (g->kind == api::chat) {
    std::string ev;
    g->cw.role(ev);
    append_chunk(out, ev);
  }
}

// Appends one chunk with an event per token the engine has produced since the last write.
void append_ready_tokens(generation* g, std::string& out) {
  std::string ev;
  while (g->sent < g->r->tokens_ready) {
    const int sent = ++g->sent;
    const bool last = sent == g->output_tokens;
    if (!g->text) g->text.emplace(g->pr.prompt);
    g->cw.token(ev, g->text->next(), last ? g->finish : nullptr);
    if (last && g->pr.include_usage)
      g->cw.usage(ev, g->prompt_tokens, g->output_tokens, g->r->cached_tokens);
    if (last) ev.append("data: [DONE]\n\n");
  }
  append_chunk(out, ev);
  if (g->r->finished) append_last_chunk(out);
}

// Streams tokens as the engine produces them; unstreamed, only waits for the end of generation.
// Returns false after an injected reset (the socket is already closed); leaves g->ok false when
// the deadline passed and g->r->abandoned set when the client went away.
asio::awaitable<bool> produce(impl_t* self, std::shared_ptr<timed_socket> ts, generation* g) {
  auto& r = g->r;
  std::string out;
  while (true) {
    co_await wait_for_tokens(g);
    if (r->abandoned) break;
    if (!r->finished && (r->tokens_ready == g->sent || !g->streaming)) {  // deadline
      g->ok = false;
      break;
    }
    if (!g->streaming) break;
    out.clear();
    if (!g->header_sent) {
      co_await header_delay(g);
      append_stream_head(self, g, out);
    }
    append_ready_tokens(g, out);
    if (g->reset_after >= 0 && g->sent >= g->reset_after) {
      // What was due goes out first (the head, the tokens so far), then the reset: the answer is
      // cut under way however late this loop woke (a busy machine readies several tokens at once,
      // and a reset before the head would be a different failure: nothing answered at all).
      co_await asio::async_write(ts->sock, asio::buffer(out), use_nothrow);
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
  co_return true;
}

// Answers an unstreamed request (or any embeddings request) once generation has finished; false
// when the connection must close.
asio::awaitable<bool> reply_unstreamed(impl_t* self, std::shared_ptr<timed_socket> ts,
                                       generation* g) {
  if (g->reset_after >= 0) {
    self->c_resets.fetch_add(1, std::memory_order_relaxed);
    ts->close_hard();
    co_return false;
  }
  co_await header_delay(g);
  std::string b;
  if (g->kind == api::embeddings)
    b = embeddings_body(g->cw, g->pr.inputs, self->opt.embedding_dim, g->prompt_tokens);
  else
    b = completion_body(g->cw, g->pr.prompt, g->prompt_tokens, g->output_tokens,
                        g->r->cached_tokens, g->finish);
  std::string out;
  append_response(out, 200, "application/json", b, self->backend_header, g->keep_alive);
  ts->arm(std::chrono::seconds(30));
  auto [ec, n] = co_await asio::async_write(ts->sock, asio::buffer(out), use_nothrow);
  co_return !ec;
}

}  // namespace

asio::awaitable<bool> handle_generation(impl_t* self, std::shared_ptr<timed_socket> ts, api kind,
                                        std::string body, bool keep_alive) {
  std::string out;
  const std::string& hdr = self->backend_header;
  generation g;
  g.kind = kind;
  g.keep_alive = keep_alive;
  std::string err;
  self->c_requests.fetch_add(1, std::memory_order_relaxed);
  if (!parse_generation(body, kind, g.pr, err)) {
    append_error_json(out, 400, err, "BadRequestError", hdr, keep_alive);
    const bool open = co_await write_reply(ts, std::move(out), keep_alive);
    co_return open;
  }
  g.fs = self->snapshot();
  auto& rng = thread_rng(self->opt.seed);
  std::uniform_real_distribution<double> u01(0, 1);
  const auto arrived = steady::now();

  co_await wait_stall(self);
  if (g.fs.spike_rate > 0 && u01(rng) < g.fs.spike_rate)
    co_await sleep_until(
        steady::now() + std::chrono::microseconds(static_cast<std::int64_t>(g.fs.spike_ms * 1000)));
  if (g.fs.error_rate > 0 && u01(rng) < g.fs.error_rate) {
    self->c_errors.fetch_add(1, std::memory_order_relaxed);
    append_error_json(out, 500, "injected failure", "InternalServerError", hdr, keep_alive);
    const bool open = co_await write_reply(ts, std::move(out), keep_alive);
    co_return open;
  }

  start_generation(self, ts, g, arrived, rng, u01);
  const bool open = co_await produce(self, ts, &g);
  if (!open) co_return false;
  auto& r = g.r;
  if (r->abandoned || !g.ok) {
    if (r->abandoned) self->c_abandoned.fetch_add(1, std::memory_order_relaxed);
    cancel_in_engine(self, r, self->snapshot().stop_on_abandon || !g.ok);
    r->finished = true;
    co_return false;
  }
  r->finished = true;  // makes the pending hang-up watch a no-op
  error_code cec;
  ts->sock.cancel(cec);

  if (!g.pr.stream || kind == api::embeddings) {
    const bool sent = co_await reply_unstreamed(self, ts, &g);
    if (!sent) co_return false;
  }
  self->c_completed.fetch_add(1, std::memory_order_relaxed);
  co_return keep_alive;
}

}  // namespace meridian::loadtest::llm
