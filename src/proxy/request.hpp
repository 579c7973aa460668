// One request as the proxy serves it: the exchange it came on, the worker serving it, what the
// handler has decided of it (route, model, endpoint, when things happened) and the scratch it
// borrows for its upstream side. Created when the request starts and gone when it ends; the
// one handle the proxy's request-path functions take. Worker thread only.
#pragma once

#include <optional>
#include <string>

#include "meridian/http/exchange.hpp"
#include "meridian/proxy/access_log.hpp"
#include "meridian/routing/model_scanner.hpp"
#include "proxy/attempt.hpp"
#include "proxy/object_resume.hpp"
#include "proxy/resume.hpp"

namespace meridian::proxy {

// Watches the rest of a body whose JSON "model" chose the route: the model must not change
// (a second "model" key, or one first seen past the peek), or the backend would serve another
// model than the one the gateway routed.
class model_guard final : public body_tap {
 public:
  // Feeds what was peeked; later observe() calls skip those bytes.
  void feed_peeked(std::string_view payload);
  bool observe(std::string_view payload) override;
  void rewind() override { seen = 0; }
  std::string_view why() const override { return why_; }
  bool changed() const;

  routing::model_scanner scanner;
  std::uint64_t fed = 0, seen = 0;
  std::optional<std::string> routed;  // the model the route was chosen with (nullopt: none)
  std::string_view why_;
};

struct request_context {
  std::shared_ptr<const snapshot> snap;  // pinned for the request's life
  std::optional<std::size_t> route;
  std::size_t cluster = 0;
  upstream::endpoint_ref endpoint;  // the last one tried
  common::time_point upstream_start{}, first_byte{};
  // The route's total timeout, shortened by the client's x-request-timeout (max(): none).
  common::time_point deadline = common::time_point::max();
  int attempts = 0;  // upstream tries, retries and hedges included
  bool model_routed = false;
  // For the access log (filled only while it is on).
  std::uint16_t flags = 0;  // response_flag bits
  std::string user_agent, host, model;
  std::int64_t prompt_tokens = -1, completion_tokens = -1;
};

// What a request borrows for its upstream side and gives back when it ends, keeping its capacity
// (an attempt with its timer, head and body text): idle client connections hold none of it.
struct request_scratch {
  explicit request_scratch(worker_context& w) : at(std::make_unique<attempt>(w)) {
    head_out.reserve(1024);
  }
  std::unique_ptr<attempt> at;     // the request's try (a hedge race's winner)
  std::unique_ptr<attempt> spare;  // a hedge's, made on the first hedge
  std::string head_out;            // the request head as sent upstream
  // Prefix affinity: the prompt's block hashes, and a de-chunked copy of a chunked body's peek.
  std::vector<std::uint64_t> blocks;
  std::string scratch;
  // A continuation's request (a resumed stream's or object's).
  std::string resume_body, resume_head;
};

// The worker's spare scratch: as many as recent concurrency needed, no more (trim() gives back
// what the last period did not use).
class scratch_pool {
 public:
  std::unique_ptr<request_scratch> take(worker_context& w) {
    peak_ = std::max(peak_, ++in_use_);
    if (free_.empty()) return std::make_unique<request_scratch>(w);
    auto s = std::move(free_.back());
    free_.pop_back();
    return s;
  }
  void give(std::unique_ptr<request_scratch> s) {
    --in_use_;
    if (closed_) return;  // shutting down: its timers go while their io_context still exists
    s->blocks.clear();
    free_.push_back(std::move(s));
  }
  // Keeps at most the peak number in use since the last trim (housekeeping).
  void trim() {
    if (free_.size() + in_use_ > peak_) free_.resize(peak_ > in_use_ ? peak_ - in_use_ : 0);
    peak_ = in_use_;
  }
  // Before the io_context goes (attempts hold timers on it); scratch given back later (a request
  // whose coroutine the io_context's shutdown destroys) is freed at once.
  void clear() {
    free_.clear();
    closed_ = true;
  }

 private:
  std::size_t in_use_ = 0, peak_ = 0;
  bool closed_ = false;
  std::vector<std::unique_ptr<request_scratch>> free_;
};

struct request {
  request(http::exchange& e, worker_context& wc, scratch_pool& p)
      : ex(e),
        w(wc),
        pool(p),
        s(p.take(wc)),
        at(s->at),
        spare(s->spare),
        head_out(s->head_out),
        blocks(s->blocks),
        scratch(s->scratch),
        resume_body(s->resume_body),
        resume_head(s->resume_head) {
    ctx.snap = wc.snap;
  }
  ~request() { pool.give(std::move(s)); }
  request(const request&) = delete;
  request& operator=(const request&) = delete;

  // The request's configuration: the snapshot it started on, whatever reloads happen meanwhile.
  const config::gateway_config& cfg() const { return *ctx.snap->cfg; }
  // A try of this request on `ep` sending `head`: its configuration, its route's timeouts and
  // its deadline; the caller adds what is particular to the try.
  try_spec try_on(upstream::endpoint_ref ep, std::string_view head) const {
    try_spec t;
    t.endpoint = std::move(ep);
    t.config = ctx.snap->cfg.get();
    t.head = head;
    t.timeouts = cfg().routes[*ctx.route].timeouts;
    t.total = ctx.deadline;
    t.request_start = ex.request_start();
    return t;
  }

  http::exchange& ex;
  worker_context& w;
  scratch_pool& pool;
  std::unique_ptr<request_scratch> s;
  std::unique_ptr<attempt>& at;
  std::unique_ptr<attempt>& spare;
  std::string& head_out;
  std::vector<std::uint64_t>& blocks;
  std::string& scratch;
  std::string& resume_body;
  std::string& resume_head;
  request_context ctx;
  model_guard guard;
  // Stream resume: what the answer has said. Object resume (storage GETs): where the body stands.
  stream_resume resume;
  object_resume object;
};

}  // namespace meridian::proxy
