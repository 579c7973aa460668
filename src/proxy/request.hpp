// One request as the proxy serves it: the exchange it came on, the worker serving it, what the
// handler has decided of it (route, model, endpoint, when things happened) and the scratch it
// borrows for its upstream side. Created when the request starts and destroyed when it ends
// (built in pooled storage, so a warm worker allocates nothing for it); the one handle the
// proxy's request-path functions take. Worker thread only.
#pragma once

#include <optional>
#include <string>

#include "meridian/http/exchange.hpp"
#include "meridian/http/headers.hpp"
#include "meridian/proxy/access_log.hpp"
#include "meridian/routing/model_scanner.hpp"
#include "meridian/tenants/tenants.hpp"
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
  std::string grpc_status;  // a gRPC call's status (the backend's, or the gateway's own error)
  std::int64_t prompt_tokens = -1, completion_tokens = -1;
  std::int64_t stream_events = -1;  // an SSE response's data events (a stream cut short: its tokens)
  // The tenant its key named (tenants configured; it lives in the pinned snapshot), what it was
  // charged up front, and whether that place and charge are held until the request ends.
  const tenants::tenant* tenant = nullptr;
  tenants::usage charged;
  bool tenant_held = false;
};

struct request_scratch;

struct request {
  // `s`: the scratch it borrows (its attempts, head and body text).
  request(http::exchange& e, worker_context& wc, request_scratch& s);
  request(const request&) = delete;
  request& operator=(const request&) = delete;

  // The request's configuration: the snapshot it started on, whatever reloads happen meanwhile.
  const config::gateway_config& cfg() const { return *ctx.snap->cfg; }
  // What the head sent upstream says about the client, and the Host it gets when the client
  // sent none: the cluster's TLS name, else the cluster's name (as nginx sends its upstream's).
  http::forward_context forward() const {
    const auto& c = cfg().clusters[ctx.cluster];
    return {ex.client_ip(), ex.scheme(), ex.request_id(),
            c.tls && !c.tls->sni.empty() ? std::string_view(c.tls->sni)
                                         : std::string_view(c.name)};
  }
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
  std::unique_ptr<attempt>& at;     // the request's try (a hedge race's winner)
  std::unique_ptr<attempt>& spare;  // a hedge's, made on the first hedge
  std::string& head_out;            // the request head as sent upstream
  // Prefix affinity: the prompt's block hashes, and a de-chunked copy of a chunked body's peek.
  std::vector<std::uint64_t>& blocks;
  std::string& scratch;
  // A continuation's request (a resumed stream's or object's).
  std::string& resume_body;
  std::string& resume_head;
  std::vector<std::pair<std::string, std::string>>& tenant_text;
  std::vector<http::header>& tenant_fields;
  request_context ctx;
  model_guard guard;
  // Stream resume: what the answer has said. Object resume (storage GETs): where the body stands.
  stream_resume resume;
  object_resume object;
};

// What a request borrows and gives back when it ends, keeping its capacity (attempts with their
// timers, head and body text), and the storage its request value is built in: idle client
// connections hold none of it, and a request costs no allocation once the worker is warm.
struct request_scratch {
  explicit request_scratch(worker_context& w) : at(std::make_unique<attempt>(w)) {
    head_out.reserve(1024);
  }
  std::unique_ptr<attempt> at;
  std::unique_ptr<attempt> spare;
  std::string head_out;
  std::vector<std::uint64_t> blocks;
  std::string scratch;
  std::string resume_body, resume_head;
  // A tenant's rate-limit headers on the response (text, and the fields pointing into it).
  std::vector<std::pair<std::string, std::string>> tenant_text;
  std::vector<http::header> tenant_fields;
  // The request served with this scratch: built fresh for each one, in place, and destroyed when
  // it ends (nothing of one request's state survives into the next).
  std::optional<request> live;
};

inline request::request(http::exchange& e, worker_context& wc, request_scratch& s)
    : ex(e),
      w(wc),
      at(s.at),
      spare(s.spare),
      head_out(s.head_out),
      blocks(s.blocks),
      scratch(s.scratch),
      resume_body(s.resume_body),
      resume_head(s.resume_head),
      tenant_text(s.tenant_text),
      tenant_fields(s.tenant_fields) {
  ctx.snap = wc.snap;
  blocks.clear();
}

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
    s->live.reset();
    free_.push_back(std::move(s));
  }
  // After clear(): the worker released its I/O; nothing is kept from now on.
  bool closed() const { return closed_; }
  // Keeps at most the peak number in use since the last trim (housekeeping).
  void trim() {
    if (free_.size() + in_use_ > peak_) free_.resize(peak_ > in_use_ ? peak_ - in_use_ : 0);
    peak_ = in_use_;
  }
  // Before the io_context goes (attempts hold timers on it). Scratch in use then goes with its
  // request's coroutine frame.
  void clear() {
    free_.clear();
    closed_ = true;
  }

 private:
  std::size_t in_use_ = 0, peak_ = 0;
  bool closed_ = false;
  std::vector<std::unique_ptr<request_scratch>> free_;
};

}  // namespace meridian::proxy
