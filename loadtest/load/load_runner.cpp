// The load generator's data path: per-thread workers, each with its own io_context, arrival
// schedule, keep-alive connections and statistics; merged on the calling thread after all workers
// join.
#include <unistd.h>

#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <random>

#include "common/net.hpp"
#include "load/load.hpp"
#include "load/sse.hpp"

namespace meridian::loadtest {

const char* error_kind_name(error_kind e) {
  switch (e) {
    case error_kind::none:
      return "none";
    case error_kind::http_status:
      return "http_status";
    case error_kind::connect:
      return "connect";
    case error_kind::transport:
      return "transport";
    case error_kind::timeout:
      return "timeout";
    case error_kind::unsent:
      return "unsent";
    case error_kind::bad_response:
      return "bad_response";
  }
  return "?";
}

namespace {

using ns = std::chrono::nanoseconds;

std::uint64_t to_ns(steady::duration d) {
  auto n = std::chrono::duration_cast<ns>(d).count();
  return n > 0 ? static_cast<std::uint64_t>(n) : 0;
}

// Fixed-capacity FIFO of intended send times; never allocates after construction.
class job_ring {
 public:
  explicit job_ring(std::size_t cap) : v_(cap) {}
  bool push(steady::time_point t) {
    if (n_ == v_.size()) return false;
    v_[(head_ + n_++) % v_.size()] = t;
    return true;
  }
  steady::time_point pop() {
    auto t = v_[head_];
    head_ = (head_ + 1) % v_.size();
    --n_;
    return t;
  }
  bool empty() const { return n_ == 0; }
  std::size_t size() const { return n_; }

 private:
  std::vector<steady::time_point> v_;
  std::size_t head_ = 0, n_ = 0;
};

// Builds request bytes into a connection-owned string; keeps prompts deterministic per seed.
class request_builder {
 public:
  request_builder(const load_config& cfg, std::uint64_t seed) : cfg_(cfg), rng_(seed) {
    // Every token is 4 bytes (" abc") so the mock's bytes/4 token estimate matches what we asked
    // for.
    std::mt19937_64 corpus_rng(0xC0FFEE);  // same corpus (and shared prefix) in every worker
    corpus_.reserve(4 * corpus_tokens);
    for (std::size_t i = 0; i < corpus_tokens; ++i) {
      corpus_.push_back(' ');
      for (int k = 0; k < 3; ++k) corpus_.push_back(static_cast<char>('a' + corpus_rng() % 26));
    }
    std::string path = cfg.path;
    host_header_ = "Host: " + cfg.host + ":" + std::to_string(cfg.port) + "\r\n";
    if (cfg.api == openai_api::none && !cfg.storage) {
      fixed_ = cfg.method + " " + path + " HTTP/1.1\r\n" + host_header_;
      if (!cfg.body.empty())
        fixed_ +=
            "Content-Type: application/json\r\nContent-Length: " + std::to_string(cfg.body.size()) +
            "\r\n";
      fixed_ += "\r\n" + cfg.body;
    }
    if (cfg.storage) {
      object_body_.assign(static_cast<std::size_t>(cfg.object_size), 'x');
      for (std::size_t i = 0; i < object_body_.size(); i += 61)
        object_body_[i] = static_cast<char>('a' + i % 26);
    }
  }

  static constexpr std::size_t corpus_tokens = 1 << 16;
  const std::string& fixed() const { return fixed_; }
  bool is_fixed() const { return !fixed_.empty(); }
  bool last_is_head() const { return last_head_; }
  int last_prompt_tokens() const { return last_prompt_tokens_; }
  std::string_view extra_body() const { return extra_; }

  void build(std::string& out, std::uint64_t seq) {
    out.clear();
    extra_ = {};
    last_head_ = false;
    if (cfg_.storage) return build_storage(out);
    const int p = static_cast<int>(std::max<std::int64_t>(1, cfg_.prompt_tokens.sample(rng_)));
    const int m = static_cast<int>(std::max<std::int64_t>(1, cfg_.max_tokens.sample(rng_)));
    last_prompt_tokens_ = p;
    body_.clear();
    body_ += "{\"model\":\"";
    body_ += cfg_.model;
    if (cfg_.api == openai_api::chat)
      body_ += "\",\"messages\":[{\"role\":\"user\",\"content\":\"";
    else if (cfg_.api == openai_api::completions)
      body_ += "\",\"prompt\":\"";
    else
      body_ += "\",\"input\":\"";
    // Shared prefix from the corpus start, a unique tag, then random corpus text.
    const int shared = std::min(cfg_.shared_prefix, p);
    body_.append(corpus_.data(), static_cast<std::size_t>(shared) * 4);
    int left = p - shared;
    if (left >= 3) {
      char tag[16];
      std::snprintf(tag, sizeof tag, " r%010llu",
                    static_cast<unsigned long long>(seq % 10000000000ull));
      body_.append(tag, 12);
      left -= 3;
    }
    while (left > 0) {
      const std::size_t take =
          std::min<std::size_t>(static_cast<std::size_t>(left), corpus_tokens / 2);
      const std::size_t off = rng_() % (corpus_tokens - take);
      body_.append(corpus_.data() + off * 4, take * 4);
      left -= static_cast<int>(take);
    }
    if (cfg_.api == openai_api::chat)
      body_ += "\"}]";
    else
      body_ += "\"";
    if (cfg_.api != openai_api::embeddings) {
      body_ += ",\"max_tokens\":";
      append_uint(body_, static_cast<std::uint64_t>(m));
      if (cfg_.stream) body_ += ",\"stream\":true,\"stream_options\":{\"include_usage\":true}";
    }
    body_ += "}";
    out += "POST ";
    out += cfg_.path;
    out += " HTTP/1.1\r\n";
    out += host_header_;
    out += "Content-Type: application/json\r\nContent-Length: ";
    append_uint(out, body_.size());
    out += "\r\n\r\n";
    out += body_;
  }

 private:
  void build_storage(std::string& out) {
    std::uniform_real_distribution<double> u(0, 1);
    const auto k = rng_() % static_cast<std::uint64_t>(std::max(1, cfg_.objects));
    const double r = u(rng_);
    std::string key = cfg_.path;
    if (key.empty() || key.back() != '/') key += '/';
    key += "obj-" + std::to_string(k);
    if (r < cfg_.put_ratio) {
      out = "PUT " + key + " HTTP/1.1\r\n" + host_header_ +
            "Content-Length: " + std::to_string(object_body_.size()) + "\r\n\r\n";
      extra_ = object_body_;
    } else {
      out = "GET " + key + " HTTP/1.1\r\n" + host_header_;
      if (u(rng_) < cfg_.range_ratio && cfg_.object_size > 1) {
        auto a = rng_() % cfg_.object_size;
        auto b = std::min<std::uint64_t>(cfg_.object_size - 1, a + rng_() % 4096);
        out += "Range: bytes=" + std::to_string(a) + "-" + std::to_string(b) + "\r\n";
      }
      out += "\r\n";
    }
    last_prompt_tokens_ = 0;
  }

  const load_config& cfg_;
  std::mt19937_64 rng_;
  std::string corpus_, body_, fixed_, host_header_, object_body_;
  std::string_view extra_;
  bool last_head_ = false;
  int last_prompt_tokens_ = 0;
};

struct worker;

struct connection {
  explicit connection(asio::io_context& ctx) : wake(ctx) {}
  std::shared_ptr<timed_socket> ts;
  bool connected = false;
  bool reused = false;
  read_buffer rb{64 * 1024, 64 << 20};
  std::string req;
  std::string body;  // non-streaming OpenAI responses
  sse_parser sse;
  body_decoder dec;
  asio::steady_timer wake;
  bool idle = false;
};

struct shared_state {
  std::atomic<std::uint64_t> issued{0};
};

struct worker {
  worker(const load_config& c, int idx, int n, shared_state* sh, steady::time_point start)
      : cfg(c),
        index(idx),
        shared(sh),
        ctx(BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO),
        builder(c, c.seed * 7919 + static_cast<std::uint64_t>(idx)),
        pending(c.max_pending),
        start(start),
        schedule(c.arrival, c.burstiness, c.profile().scaled(1.0 / n),
                 c.seed * 31 + static_cast<std::uint64_t>(idx), static_cast<double>(idx) / n),
        stopper(ctx) {
    per_request = per_request_thresholds(c.slos);
    end = start + std::chrono::microseconds(static_cast<std::int64_t>(c.duration_s * 1e6));
    warm_end = start + std::chrono::microseconds(static_cast<std::int64_t>(c.warmup_s * 1e6));
    const double drain = std::min(c.drain_s, c.timeout_s);
    hard_end = end + std::chrono::microseconds(static_cast<std::int64_t>(drain * 1e6));
    interval_s = std::max(1.0, std::ceil(c.duration_s / 300.0));
    timeline.resize(static_cast<std::size_t>((c.duration_s + drain) / interval_s) + 2);
    for (std::size_t i = 0; i < timeline.size(); ++i)
      timeline[i].start_s = static_cast<double>(i) * interval_s;
    if (!c.csv_path.empty())
      records.reserve(static_cast<std::size_t>(
          std::min(4e6, std::max(1e3, c.profile().expected_count() / n * 1.1))));
    const int nconn = c.connections / n + (idx < c.connections % n ? 1 : 0);
    for (int i = 0; i < nconn; ++i) conns.push_back(std::make_unique<connection>(ctx));
  }

  const load_config& cfg;
  int index;
  shared_state* shared;
  asio::io_context ctx;
  request_builder builder;
  job_ring pending;
  steady::time_point start, end, warm_end, hard_end;
  arrival_schedule schedule;
  asio::steady_timer stopper;
  std::vector<std::unique_ptr<connection>> conns;
  std::vector<connection*> idle;
  bool schedule_done = false;
  bool aborting = false;
  int live_conns = 0;
  std::uint64_t seq = 0;
  tcp::endpoint target;
  request_slo per_request;

  // statistics (this thread only)
  std::uint64_t completed = 0, failed = 0, sent = 0, late = 0, unsent = 0, good = 0,
                warm_skipped = 0;
  std::uint64_t err[8] = {};
  std::map<int, std::uint64_t> statuses;
  std::uint64_t in_tokens = 0, out_tokens = 0, token_events = 0, clumped = 0;
  histogram ttft, tpot, itl, e2el, lag;
  std::vector<std::pair<std::string, std::uint64_t>> backends;
  double interval_s = 1;
  std::vector<interval_stats> timeline;
  std::vector<request_record> records;
  steady::time_point last_done{};
  // progress (read by the main thread)
  histogram progress_hist;
  std::atomic<std::uint64_t> a_completed{0}, a_failed{0}, a_inflight{0}, a_p50{0}, a_p99{0};
  std::uint64_t inflight = 0;

  int backend_index(std::string_view name) {
    for (std::size_t i = 0; i < backends.size(); ++i)
      if (backends[i].first == name) return static_cast<int>(i);
    backends.emplace_back(std::string(name), 0);
    return static_cast<int>(backends.size() - 1);
  }

  void wake_one() {
    if (idle.empty()) return;
    auto* c = idle.back();
    idle.pop_back();
    c->idle = false;
    c->wake.cancel();
  }
  void wake_all() {
    while (!idle.empty()) wake_one();
  }
};

struct outcome {
  error_kind error = error_kind::none;
  int status = 0;
  steady::time_point first_token{}, done{};
  std::uint32_t tokens = 0;
  std::uint32_t clumped = 0;
  int backend = -1;
  bool has_usage = false;
};

void record(worker* w, connection*, steady::time_point intended, steady::time_point sent_at,
            const outcome& o, int prompt_tokens) {
  if (intended < w->warm_end) {
    ++w->warm_skipped;
    return;
  }
  const bool ok = o.error == error_kind::none;
  const std::uint64_t e2e = to_ns(o.done - intended);
  const std::uint64_t lag = to_ns(sent_at - intended);
  const bool streamed =
      w->cfg.stream && w->cfg.api != openai_api::none && w->cfg.api != openai_api::embeddings;
  auto ti = static_cast<std::size_t>(std::chrono::duration<double>(intended - w->start).count() /
                                     w->interval_s);
  auto ci = static_cast<std::size_t>(std::chrono::duration<double>(o.done - w->start).count() /
                                     w->interval_s);
  if (ti >= w->timeline.size()) ti = w->timeline.size() - 1;
  if (ci >= w->timeline.size()) ci = w->timeline.size() - 1;
  w->last_done = std::max(w->last_done, o.done);
  if (o.error != error_kind::unsent) w->lag.record(lag);
  if (lag > static_cast<std::uint64_t>(w->cfg.late_threshold_ms * 1e6)) ++w->late;
  std::uint64_t ttft_ns = 0, tpot_ns = 0;
  if (ok) {
    ++w->completed;
    ++w->timeline[ci].completed;
    w->e2el.record(e2e);
    w->progress_hist.record(e2e);
    auto& tl = w->timeline[ti];
    if (!tl.e2el) tl.e2el = std::make_unique<histogram>();
    tl.e2el->record(e2e);
    w->in_tokens += static_cast<std::uint64_t>(prompt_tokens);
    w->out_tokens += o.tokens;
    w->timeline[ci].output_tokens += o.tokens;
    if (w->cfg.api != openai_api::none) {
      ttft_ns =
          streamed && o.first_token != steady::time_point{} ? to_ns(o.first_token - intended) : e2e;
      w->ttft.record(ttft_ns);
      if (streamed) {
        if (!tl.ttft) tl.ttft = std::make_unique<histogram>();
        tl.ttft->record(ttft_ns);
      }
      if (o.tokens > 1 && streamed) {
        tpot_ns = (e2e - std::min(e2e, ttft_ns)) / (o.tokens - 1);
        w->tpot.record(tpot_ns);
      }
      if (streamed &&
          std::max<double>(static_cast<double>(tpot_ns), w->cfg.expected_itl_ms * 1e6) > 1e6)
        w->clumped += o.clumped;
    }
    const auto& pr = w->per_request;
    const bool good = (!pr.e2el_ns || e2e <= pr.e2el_ns) &&
                      (!pr.ttft_ns || ttft_ns <= pr.ttft_ns) &&
                      (!pr.tpot_ns || tpot_ns <= pr.tpot_ns);
    if (good) ++w->good;
  } else {
    ++w->failed;
    ++w->timeline[ci].failed;
    ++w->err[static_cast<int>(o.error)];
  }
  if (o.status) ++w->statuses[o.status];
  if (o.backend >= 0) ++w->backends[static_cast<std::size_t>(o.backend)].second;
  if (!w->cfg.csv_path.empty() && w->records.size() < 20'000'000)
    w->records.push_back({std::chrono::duration<double>(intended - w->start).count(),
                          static_cast<float>(lag / 1e6), static_cast<float>(ttft_ns / 1e6),
                          static_cast<float>(e2e / 1e6), static_cast<std::uint16_t>(o.status),
                          static_cast<std::uint16_t>(o.backend < 0 ? 0xffff : o.backend), o.tokens,
                          static_cast<std::uint8_t>(o.error)});
  w->a_completed.store(w->completed, std::memory_order_relaxed);
  w->a_failed.store(w->failed, std::memory_order_relaxed);
}

void drop_connection(connection* c) {
  if (c->ts) {
    c->ts->stop();
    error_code ec;
    c->ts->sock.close(ec);
  }
  c->connected = false;
  c->reused = false;
}

asio::awaitable<bool> ensure_connected(worker* w, connection* c) {
  if (c->connected) co_return true;
  c->ts = std::make_shared<timed_socket>(w->ctx.get_executor());
  c->ts->start_watch();
  c->ts->arm(
      std::chrono::microseconds(static_cast<std::int64_t>(std::min(w->cfg.timeout_s, 5.0) * 1e6)));
  auto [ec] = co_await c->ts->sock.async_connect(w->target, use_nothrow);
  if (ec) {
    drop_connection(c);
    co_return false;
  }
  error_code e2;
  c->ts->sock.set_option(tcp::no_delay(true), e2);
  c->connected = true;
  c->reused = false;
  c->rb.consume(c->rb.size());
  co_return true;
}

// One request/response exchange on a connected socket. Returns false if nothing at all came back on
// a reused connection (the server closed it while idle), which the caller retries once.
asio::awaitable<bool> exchange(worker* w, connection* c, steady::time_point intended, outcome& o) {
  auto* ts = c->ts.get();
  ts->arm(std::chrono::microseconds(static_cast<std::int64_t>(w->cfg.timeout_s * 1e6)));
  const auto head_buf = asio::buffer(w->builder.is_fixed() ? w->builder.fixed() : c->req);
  error_code wec;
  if (w->builder.extra_body().empty()) {
    std::tie(wec, std::ignore) = co_await asio::async_write(ts->sock, head_buf, use_nothrow);
  } else {
    std::array<asio::const_buffer, 2> bufs{
        head_buf, asio::buffer(w->builder.extra_body().data(), w->builder.extra_body().size())};
    std::tie(wec, std::ignore) = co_await asio::async_write(ts->sock, bufs, use_nothrow);
  }
  if (wec) {
    o.error = ts->timed_out ? error_kind::timeout : error_kind::transport;
    co_return !c->reused;
  }
  bool have_head = false;
  bool any_bytes = false;
  const bool openai = w->cfg.api != openai_api::none;
  const bool head_req = w->builder.last_is_head();
  bool is_sse = false;
  bool saw_done = false;
  steady::time_point last_token{};
  c->body.clear();
  while (true) {
    auto buf = c->rb.prepare(4096);
    if (buf.size() == 0) {
      o.error = error_kind::bad_response;
      co_return true;
    }
    auto [ec, n] = co_await ts->sock.async_read_some(buf, use_nothrow);
    const auto now = steady::now();
    if (ec) {
      if (have_head && ec == asio::error::eof) {
        c->dec.finish_on_close();
        if (c->dec.done()) {
          o.done = now;
          c->connected = false;
          break;
        }
      }
      o.error = ts->timed_out ? error_kind::timeout : error_kind::transport;
      o.done = now;
      co_return any_bytes || !c->reused;
    }
    any_bytes = true;
    c->rb.commit(n);
    if (!have_head) {
      response_head h;
      long hl = parse_response_head(c->rb.view(), h);
      if (hl == 0) continue;
      if (hl < 0) {
        o.error = error_kind::bad_response;
        o.done = now;
        co_return true;
      }
      have_head = true;
      o.status = h.status;
      if (!h.backend.empty()) o.backend = w->backend_index(h.backend);
      if (!h.keep_alive) c->connected = false;  // closed after this exchange
      is_sse = h.content_type.starts_with("text/event-stream");
      if (head_req || h.status == 204 || h.status == 304 || (h.status >= 100 && h.status < 200))
        c->dec.reset_length(0);
      else if (h.chunked)
        c->dec.reset_chunked();
      else if (h.content_length >= 0)
        c->dec.reset_length(static_cast<std::uint64_t>(h.content_length));
      else {
        c->dec.reset_until_close();
        c->connected = false;
      }
      c->rb.consume(static_cast<std::size_t>(hl));
      if (is_sse) c->sse.reset();
    }
    std::uint32_t events_this_read = 0;
    auto used = c->dec.feed(c->rb.view(), [&](std::string_view d) {
      if (!openai) return;
      if (is_sse) {
        c->sse.feed(d, [&](std::string_view ev) {
          auto info = inspect_openai_chunk(ev);
          if (info.done) saw_done = true;
          if (info.is_error && !info.done) o.error = error_kind::bad_response;
          if (info.has_usage && info.completion_tokens >= 0) {
            o.has_usage = true;
            o.tokens = static_cast<std::uint32_t>(info.completion_tokens);
          }
          if (info.has_token) {
            ++w->token_events;
            if (!o.has_usage) ++o.tokens;
            if (o.first_token == steady::time_point{})
              o.first_token = now;
            else
              w->itl.record(to_ns(now - last_token));
            last_token = now;
            if (++events_this_read > 1) ++o.clumped;
          }
        });
      } else if (c->body.size() < (16u << 20)) {
        c->body.append(d);
      }
    });
    c->rb.consume(used);
    if (c->dec.failed()) {
      o.error = error_kind::bad_response;
      o.done = now;
      co_return true;
    }
    if (c->dec.done()) {
      o.done = now;
      break;
    }
  }
  if (o.status >= 400 || o.status < 200) {
    if (o.error == error_kind::none) o.error = error_kind::http_status;
  } else if (openai && !is_sse) {
    auto info = inspect_openai_body(c->body);
    if (info.is_error) o.error = error_kind::bad_response;
    if (info.completion_tokens >= 0) o.tokens = static_cast<std::uint32_t>(info.completion_tokens);
    o.first_token = o.done;
  } else if (openai && is_sse && !saw_done && o.error == error_kind::none) {
    o.error = error_kind::bad_response;  // stream ended without [DONE]
  }
  if (c->rb.size() > 0) c->connected = false;  // unexpected extra bytes: don't trust the connection
  co_return true;
}

asio::awaitable<void> do_request(worker* w, connection* c, steady::time_point intended) {
  const std::uint64_t seq = w->seq++;
  if (!w->builder.is_fixed()) w->builder.build(c->req, seq);
  const int prompt_tokens = w->builder.last_prompt_tokens();
  ++w->inflight;
  w->a_inflight.store(w->inflight, std::memory_order_relaxed);
  outcome o;
  steady::time_point sent_at{};
  for (int attempt = 0; attempt < 2; ++attempt) {
    o = outcome{};
    bool up = c->connected;
    if (!up) up = co_await ensure_connected(w, c);
    if (!up) {
      o.error = error_kind::connect;
      o.done = steady::now();
      sent_at = o.done;
      break;
    }
    sent_at = steady::now();
    ++w->sent;
    const bool final = co_await exchange(w, c, intended, o);
    if (o.error != error_kind::none || !c->connected)
      drop_connection(c);
    else
      c->reused = true;
    if (final) break;
    --w->sent;
  }
  if (o.done == steady::time_point{}) o.done = steady::now();
  --w->inflight;
  w->a_inflight.store(w->inflight, std::memory_order_relaxed);
  record(w, c, intended, sent_at, o, prompt_tokens);
}

void conn_finished(worker* w) {
  if (--w->live_conns == 0) w->stopper.cancel();
}

asio::awaitable<void> open_loop_conn(worker* w, connection* c) {
  while (!w->aborting) {
    if (w->pending.empty()) {
      if (w->schedule_done) break;
      c->idle = true;
      w->idle.push_back(c);
      c->wake.expires_at(w->hard_end);
      co_await c->wake.async_wait(use_nothrow);
      if (c->idle) {  // timed out rather than handed work
        c->idle = false;
        std::erase(w->idle, c);
      }
      continue;
    }
    auto intended = w->pending.pop();
    co_await do_request(w, c, intended);
  }
  drop_connection(c);
  conn_finished(w);
}

asio::awaitable<void> closed_loop_conn(worker* w, connection* c) {
  while (!w->aborting && steady::now() < w->end) {
    if (w->cfg.max_requests &&
        w->shared->issued.fetch_add(1, std::memory_order_relaxed) >= w->cfg.max_requests)
      break;
    co_await do_request(w, c, steady::now());
  }
  drop_connection(c);
  conn_finished(w);
}

asio::awaitable<void> scheduler(worker* w) {
  asio::steady_timer t(w->ctx);
  while (!w->aborting) {
    auto next = w->schedule.next();
    if (!next) break;
    if (w->cfg.max_requests &&
        w->shared->issued.fetch_add(1, std::memory_order_relaxed) >= w->cfg.max_requests)
      break;
    auto tp = w->start + std::chrono::nanoseconds(static_cast<std::int64_t>(*next * 1e9));
    if (tp > steady::now() + std::chrono::microseconds(20)) {
      t.expires_at(tp);
      co_await t.async_wait(use_nothrow);
    }
    if (!w->pending.push(tp)) {
      outcome o;
      o.error = error_kind::unsent;
      o.done = steady::now();
      ++w->unsent;
      record(w, nullptr, tp, o.done, o, 0);
      continue;
    }
    w->wake_one();
  }
  w->schedule_done = true;
  w->wake_all();
}

// Ends the run at hard_end: requests still queued are reported unsent, open sockets are closed.
asio::awaitable<void> stop_at_hard_end(worker* w) {
  w->stopper.expires_at(w->hard_end);
  auto [ec] = co_await w->stopper.async_wait(use_nothrow);
  if (ec) co_return;  // every connection finished first
  w->aborting = true;
  while (!w->pending.empty()) {
    auto tp = w->pending.pop();
    outcome o;
    o.error = error_kind::unsent;
    o.done = steady::now();
    ++w->unsent;
    record(w, nullptr, tp, o.done, o, 0);
  }
  for (auto& c : w->conns) drop_connection(c.get());
  w->wake_all();
}

asio::awaitable<void> progress_tick(worker* w) {
  asio::steady_timer t(w->ctx);
  while (!w->aborting && w->live_conns > 0) {
    t.expires_after(std::chrono::seconds(1));
    co_await t.async_wait(use_nothrow);
    w->a_p50.store(w->progress_hist.percentile(50), std::memory_order_relaxed);
    w->a_p99.store(w->progress_hist.percentile(99), std::memory_order_relaxed);
    w->progress_hist.reset();
  }
}

}  // namespace

std::string load_config::finalize() {
  std::string_view u = url;
  if (!u.starts_with("http://")) return "--url must start with http:// (got '" + url + "')";
  u.remove_prefix(7);
  auto slash = u.find('/');
  std::string_view hostport = u.substr(0, slash);
  path = slash == std::string_view::npos ? "/" : std::string(u.substr(slash));
  auto colon = hostport.rfind(':');
  host = std::string(hostport.substr(0, colon));
  if (host == "localhost") host = "127.0.0.1";
  if (colon == std::string_view::npos)
    port = 80;
  else {
    auto p = parse_int(hostport.substr(colon + 1));
    if (!p || *p <= 0 || *p > 65535) return "bad port in --url";
    port = static_cast<std::uint16_t>(*p);
  }
  error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec) return "--url host must be an IP literal such as 127.0.0.1";
  if (!addr.is_loopback()) return "--url must point at a loopback address (127.0.0.0/8 or ::1)";
  if (api != openai_api::none && path == "/")
    path = api == openai_api::chat          ? "/v1/chat/completions"
           : api == openai_api::completions ? "/v1/completions"
                                            : "/v1/embeddings";
  if (connections < 1) return "--connections must be >= 1";
  if (threads < 1) threads = 1;
  if (threads > connections) threads = connections;
  if (duration_s <= 0 && !(closed && max_requests)) return "--duration must be > 0";
  if (duration_s <= 0) duration_s = 3600;
  if (!closed && rate <= 0 && profile_points.empty())
    return "open-loop mode needs --rate > 0 (or use --closed)";
  if (timeout_s <= 0) return "--timeout must be > 0";
  if (max_pending < 1) max_pending = 1;
  std::string err;
  if (!slo_text.empty()) {
    auto s = parse_slos(slo_text, err);
    if (!s) return err;
    slos = std::move(*s);
  }
  if (!profile_points.empty() && !rate_profile::from_points(profile_points, duration_s))
    return "bad rate profile";
  return {};
}

rate_profile load_config::profile() const {
  if (closed) return rate_profile::constant(0, duration_s);
  if (!profile_points.empty()) return *rate_profile::from_points(profile_points, duration_s);
  return rate_profile::constant(rate, duration_s);
}

namespace {
// Uploads every object once before a storage run so GETs find them (startup, not the data path).
void storage_setup(const load_config& cfg) {
  asio::io_context ctx;
  tcp::socket s(ctx);
  s.connect({asio::ip::make_address(cfg.host), cfg.port});
  timeval tv{10, 0};
  ::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string body(static_cast<std::size_t>(cfg.object_size), 'x');
  std::string prefix = cfg.path;
  if (prefix.empty() || prefix.back() != '/') prefix += '/';
  std::vector<char> buf(64 * 1024);
  for (int i = 0; i < cfg.objects; ++i) {
    std::string req = "PUT " + prefix + "obj-" + std::to_string(i) +
                      " HTTP/1.1\r\nHost: " + cfg.host +
                      "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n";
    std::array<asio::const_buffer, 2> b{asio::buffer(req), asio::buffer(body)};
    asio::write(s, b);
    std::string resp;
    while (true) {
      auto n = s.read_some(asio::buffer(buf));
      resp.append(buf.data(), n);
      response_head h;
      long hl = parse_response_head(resp, h);
      if (hl < 0) throw std::runtime_error("bad response during storage setup");
      if (hl > 0 && resp.size() >=
                        static_cast<std::size_t>(hl) +
                            static_cast<std::size_t>(std::max<std::int64_t>(0, h.content_length))) {
        if (h.status >= 300)
          throw std::runtime_error("storage setup PUT failed with status " +
                                   std::to_string(h.status));
        break;
      }
    }
  }
}
}  // namespace

run_summary run_load(const load_config& cfg) {
  if (cfg.storage && cfg.put_ratio < 1.0) storage_setup(cfg);
  shared_state sh;
  const int n = cfg.threads;
  const auto start = steady::now() + std::chrono::milliseconds(20);
  std::vector<std::unique_ptr<worker>> ws;
  for (int i = 0; i < n; ++i) ws.push_back(std::make_unique<worker>(cfg, i, n, &sh, start));
  for (auto& w : ws) {
    w->target = tcp::endpoint(asio::ip::make_address(cfg.host), cfg.port);
    w->live_conns = static_cast<int>(w->conns.size());
    for (auto& c : w->conns)
      asio::co_spawn(
          w->ctx,
          cfg.closed ? closed_loop_conn(w.get(), c.get()) : open_loop_conn(w.get(), c.get()),
          asio::detached);
    if (!cfg.closed) asio::co_spawn(w->ctx, scheduler(w.get()), asio::detached);
    asio::co_spawn(w->ctx, stop_at_hard_end(w.get()), asio::detached);
  }
  const bool progress =
      cfg.progress == 1 || (cfg.progress == -1 && ::isatty(STDOUT_FILENO) && !cfg.quiet);
  if (progress)
    for (auto& w : ws) asio::co_spawn(w->ctx, progress_tick(w.get()), asio::detached);
  std::mutex mu;
  std::condition_variable cv;
  int running = n;
  std::vector<std::thread> threads;
  for (auto& w : ws)
    threads.emplace_back([&, wp = w.get()] {
      // All threads begin together at the common start.
      std::this_thread::sleep_until(start);
      wp->ctx.run();
      std::lock_guard lk(mu);
      --running;
      cv.notify_all();
    });
  {
    std::unique_lock lk(mu);
    while (running > 0) {
      cv.wait_for(lk, std::chrono::seconds(1));
      if (!progress || running == 0) continue;
      std::uint64_t done = 0, fail = 0, infl = 0, p50 = 0, p99 = 0;
      for (auto& w : ws) {
        done += w->a_completed.load();
        fail += w->a_failed.load();
        infl += w->a_inflight.load();
        p50 = std::max(p50, w->a_p50.load());
        p99 = std::max(p99, w->a_p99.load());
      }
      const double el = std::chrono::duration<double>(steady::now() - start).count();
      std::printf("\r[%6.1fs] done %llu (%.0f/s)  in-flight %llu  p50 %s  p99 %s  errors %llu   ",
                  el, static_cast<unsigned long long>(done),
                  el > 0 ? static_cast<double>(done) / el : 0.0,
                  static_cast<unsigned long long>(infl),
                  format_duration_ms(static_cast<double>(p50) / 1e6).c_str(),
                  format_duration_ms(static_cast<double>(p99) / 1e6).c_str(),
                  static_cast<unsigned long long>(fail));
      std::fflush(stdout);
    }
  }
  for (auto& t : threads) t.join();
  if (progress) std::printf("\n");

  run_summary s;
  s.label = cfg.label;
  s.configured_duration_s = cfg.duration_s;
  s.interval_s = ws.front()->interval_s;
  s.timeline.resize(ws.front()->timeline.size());
  steady::time_point last{};
  std::map<std::string, int> backend_ids;
  for (auto& w : ws) {
    s.completed += w->completed;
    s.failed += w->failed;
    s.sent += w->sent;
    s.late += w->late;
    s.unsent += w->unsent;
    s.good += w->good;
    s.warmup_skipped += w->warm_skipped;
    s.input_tokens += w->in_tokens;
    s.output_tokens += w->out_tokens;
    s.token_events += w->token_events;
    s.clumped_events += w->clumped;
    for (int k = 1; k < 8; ++k)
      if (w->err[k]) s.errors[error_kind_name(static_cast<error_kind>(k))] += w->err[k];
    for (auto& [st, c] : w->statuses) s.status_counts[st] += c;
    s.ttft.merge(w->ttft);
    s.tpot.merge(w->tpot);
    s.itl.merge(w->itl);
    s.e2el.merge(w->e2el);
    s.send_lag.merge(w->lag);
    std::vector<int> remap;
    for (auto& [name, c] : w->backends) {
      auto [it, inserted] = backend_ids.emplace(name, static_cast<int>(s.per_backend.size()));
      if (inserted) {
        s.per_backend.emplace_back(name, 0);
        s.backend_names.push_back(name);
      }
      s.per_backend[static_cast<std::size_t>(it->second)].second += c;
      remap.push_back(it->second);
    }
    for (std::size_t i = 0; i < s.timeline.size(); ++i) {
      auto& d = s.timeline[i];
      auto& x = w->timeline[i];
      d.start_s = x.start_s;
      d.completed += x.completed;
      d.failed += x.failed;
      d.output_tokens += x.output_tokens;
      if (x.e2el) {
        if (!d.e2el) d.e2el = std::make_unique<histogram>();
        d.e2el->merge(*x.e2el);
      }
      if (x.ttft) {
        if (!d.ttft) d.ttft = std::make_unique<histogram>();
        d.ttft->merge(*x.ttft);
      }
    }
    for (auto r : w->records) {
      if (r.backend != 0xffff) r.backend = static_cast<std::uint16_t>(remap[r.backend]);
      s.records.push_back(r);
    }
    last = std::max(last, w->last_done);
  }
  std::sort(s.records.begin(), s.records.end(),
            [](auto& a, auto& b) { return a.intended_s < b.intended_s; });
  const auto measured_from =
      start + std::chrono::microseconds(static_cast<std::int64_t>(cfg.warmup_s * 1e6));
  s.duration_s = std::max(1e-9, std::chrono::duration<double>(last - measured_from).count());
  if (last == steady::time_point{}) s.duration_s = cfg.duration_s;
  // Trim empty tail intervals.
  while (s.timeline.size() > 1 && s.timeline.back().completed == 0 &&
         s.timeline.back().failed == 0 && !s.timeline.back().e2el)
    s.timeline.pop_back();
  evaluate_slos(cfg, s);
  return s;
}

void evaluate_slos(const load_config& cfg, run_summary& s) {
  s.slo_results.clear();
  s.slo_pass = true;
  for (auto& slo : cfg.slos) {
    double v = 0;
    auto lat = [&](const histogram& h) {
      const double p = stat_percentile(slo.stat);
      return (p < 0 ? h.mean() : static_cast<double>(h.percentile(p))) / 1e6;
    };
    bool empty = false;
    switch (slo.metric) {
      case slo_metric::ttft:
        v = lat(s.ttft), empty = s.ttft.count() == 0;
        break;
      case slo_metric::tpot:
        v = lat(s.tpot), empty = s.tpot.count() == 0;
        break;
      case slo_metric::itl:
        v = lat(s.itl), empty = s.itl.count() == 0;
        break;
      case slo_metric::e2el:
        v = lat(s.e2el), empty = s.e2el.count() == 0;
        break;
      case slo_metric::error_rate:
        v = s.error_rate();
        break;
      case slo_metric::late_rate:
        v = s.sent ? static_cast<double>(s.late) / static_cast<double>(s.sent) : 0;
        break;
      case slo_metric::request_throughput:
        v = s.request_throughput();
        break;
      case slo_metric::goodput:
        v = s.goodput();
        break;
    }
    // A latency gate with no successful requests cannot be met.
    const bool pass = !empty && slo.holds(v);
    s.slo_results.push_back({slo.text, v, pass});
    if (!pass) s.slo_pass = false;
  }
}

}  // namespace meridian::loadtest
