// The per-request context (which route, model and endpoint, when things happened) and the
// per-connection proxy state that carries it with the reusable attempt and buffers. One per
// client connection, used by its worker thread.
#pragma once

#include <optional>
#include <string>

#include "meridian/http/connection.hpp"
#include "meridian/proxy/access_log.hpp"
#include "meridian/routing/model_scanner.hpp"
#include "proxy/attempt.hpp"

namespace meridian::proxy {

// Watches the rest of a body whose JSON "model" chose the route: the model must not change
// (a second "model" key, or one first seen past the peek), or the backend would serve another
// model than the one the gateway routed.
class model_guard final : public body_tap {
 public:
  void reset() {
    scanner.reset();
    fed = seen = 0;
    routed.reset();
    why_ = {};
  }
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

  void reset() {
    snap.reset();
    route.reset();
    endpoint.reset();
    upstream_start = first_byte = {};
    deadline = common::time_point::max();
    attempts = 0;
    model_routed = false;
    flags = 0;
    user_agent.clear();
    host.clear();
    model.clear();
    prompt_tokens = completion_tokens = -1;
  }
};

struct conn_state final : http::connection_state {
  explicit conn_state(worker_context& w) : at(std::make_unique<attempt>(w)) {
    head_out.reserve(1024);
  }
  std::unique_ptr<attempt> at;     // the request's try (a hedge race's winner)
  std::unique_ptr<attempt> spare;  // a hedge's, made on the connection's first hedge
  std::string head_out;
  request_context ctx;
  model_guard guard;
  // Prefix affinity: the prompt's block hashes, and a de-chunked copy of a chunked body's peek.
  std::vector<std::uint64_t> blocks;
  std::string scratch;
  // Stream resume: what the answer has said, and the continuation's request.
  stream_resume resume;
  std::string resume_body, resume_head;
  // Object resume (storage GETs): where the body stands.
  object_resume object;
};

}  // namespace meridian::proxy
