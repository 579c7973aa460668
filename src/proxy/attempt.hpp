// One try of a request against one endpoint: its own upstream connection (pooled or new), its
// own buffer and deadline. It sends the request head and body and reads the response head, then
// lends its socket to the relay for the body. It never writes to the client: it returns an
// outcome and the handler decides what the client sees. What a try is (endpoint, head, deadlines,
// route, prefix credit, transfer size) is a try_spec value handed to run(). Borrowed by a request
// from its worker's pool and reused by later ones; worker thread only.
#pragma once

#include <boost/asio/awaitable.hpp>

#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "meridian/common/error.hpp"
#include "meridian/http/exchange.hpp"
#include "meridian/runtime/watchdog.hpp"
#include "meridian/upstream/stream_observer.hpp"
#include "proxy/worker_context.hpp"

namespace meridian::proxy {

// Sees every payload byte of a request body that is streamed upstream; returning false aborts
// the request (the body broke a rule that needed all of it, e.g. a second JSON "model").
class body_tap {
 public:
  virtual bool observe(std::string_view payload) = 0;
  virtual std::string_view why() const = 0;
  // A new attempt sends the body again from its first byte.
  virtual void rewind() = 0;

 protected:
  ~body_tap() = default;
};

// One try: where it goes, what it sends and what bounds it.
struct try_spec {
  upstream::endpoint_ref endpoint;
  // The request's configuration (its pinned snapshot's); null: the worker's current one.
  const config::gateway_config* config = nullptr;
  std::string_view head;  // the request head as the backend gets it (outlives the try)
  // Sent instead of the client's body, Content-Length framed (a stream's continuation; outlives
  // the try); nullopt: the client's body.
  std::optional<std::string_view> body;
  body_tap* tap = nullptr;                               // sees the client's body on its way
  bool may_reuse = true;                                 // a pooled connection may carry it
  config::upstream_timeouts timeouts;                    // the route's
  common::time_point total = common::time_point::max();  // the request's deadline
  // Where its latency and token figures count (the route's metrics; null: not counted, as for a
  // continuation, whose request's first token was counted already), and when the client's
  // request began (time to first token counts from there).
  metrics::route_metrics* route = nullptr;
  common::time_point request_start{};
  // Prefix affinity: the prompt blocks the endpoint was not credited with (-1: no prefix term),
  // of how many.
  std::int32_t uncached = -1, prompt_blocks = 0;
  // Storage: the bytes it is expected to move, counted in its endpoint's transfer bytes while in
  // flight.
  double transfer = 0;
  // What the pick expected of the endpoint (routing::candidates: the wait from its load, the
  // requests it held); queue < 0: not modelled, the try asks the cost model itself.
  double expected_queue = -1, expected_outstanding = 0;
};

class attempt final : public http::cancellable, public upstream::down_watch {
 public:
  explicit attempt(worker_context& w);
  ~attempt();

  // Connects (or reuses a pooled connection when t.may_reuse), sends t.head and the request body
  // (t.body, else the client's), and reads the response head and, when it has a body, waits for
  // the body's first byte (first_byte timeout): nothing reaches the client before that, so a
  // failure up to there can still be answered with a clean error or retried. An ok outcome
  // leaves response() valid and the socket open for the relay; every other outcome has closed it.
  boost::asio::awaitable<common::outcome> run(try_spec t, http::exchange& client);
  // The deadline of the next read of a response body: the idle gap, within the total.
  common::time_point next_read_deadline() const {
    return std::min(w_.clock->now() + timeouts_.idle, total_);
  }
  bool past_total() const { return w_.clock->now() >= total_; }
  // The request body is still whole in the client connection's buffer (not yet consumed), so
  // it can be sent again; the handler consumes it once it keeps a response.
  bool body_held() const { return body_held_; }

  const http::response_head& response() const { return resp_; }
  const upstream::endpoint_ref& endpoint() const { return ep_; }
  // Whether the request went out whole (so the connection may be pooled after the response).
  bool request_complete() const { return request_complete_; }

  // For the relay: response bytes read and not yet consumed, more of them under the idle
  // deadline (0 on EOF, error or deadline), and why a read failed.
  std::string_view buffered() const { return {buf_->bytes.get() + begin_, end_ - begin_}; }
  // The relay has serialized response(): its bytes may be overwritten from now on.
  void release_head() { pinned_ = 0; }
  void consume(std::size_t n) { begin_ += n; }
  boost::asio::awaitable<std::size_t> read_more(common::time_point deadline);
  bool timed_out() const { return deadline_.expired(); }
  const common::clock* clock() const { return w_.clock; }
  // Reusable text for the relay (an SSE error event) once the request is sent.
  std::string& scratch_text() { return chunk_heads_; }

  void count_interruption(metrics::interruption why) {
    w_.metrics.cluster(ep_->info->cluster).streams_interrupted[static_cast<int>(why)].inc();
  }
  void count_error(metrics::upstream_error e) { ep_->metrics->errors[static_cast<int>(e)].inc(); }
  // The relay hands over each piece of decoded response payload as it forwards it: what the
  // endpoint's estimates learn from (SSE events give time to first token and per-token time,
  // `usage` the token counts; a transfer's bytes its throughput).
  void on_payload(std::string_view payload) {
    relayed_ += payload.size();
    if (observe_ || obs_.sse()) observe(payload);
  }
  const upstream::stream_observer& stream() const { return obs_; }
  // The whole response reached the client (call before finish()); a response below 500 that
  // did is what starts the endpoint's failure count over.
  void mark_complete();
  // The backend broke the response off (reset or stalled) after its head: a failure of the
  // endpoint's, counted toward its ejection as a 5xx is (call before finish()).
  void mark_cut();
  // Ends the exchange: the connection goes back to the pool when reusable, else is closed.
  void finish(bool reusable);
  void cancel() override;
  // The probes found the endpoint down while this try was on it: it ends now (endpoint_down
  // before a response; a broken stream after one).
  void endpoint_down() override;
  bool found_down() const { return down_; }
  // Cancels a try another one of the same request beat (a hedge race): it ends with an
  // abandoned outcome and teaches its endpoint nothing bad.
  void abandon() {
    abandoned_ = true;
    cancel();
  }
  // When the try went out (its endpoint was picked).
  common::time_point picked_at() const { return picked_at_; }
  // Runs a body whole in `client`'s buffer through `tap`; false when the tap refuses it.
  static bool check_whole_body(const http::exchange& client, body_tap& tap);

 private:
  // Opens a connection to ep_ (TCP, then TLS where its cluster speaks it) under the connect
  // deadline.
  boost::asio::awaitable<common::outcome> connect();
  // A connect that failed or timed out: counted against the endpoint, logged with `why`
  // (rate-limited), and the try's outcome with `message` for the client.
  common::outcome connect_failed(bool timed_out, std::string_view why, std::string message);
  boost::asio::awaitable<common::outcome> send(http::exchange& client, std::string_view head,
                                               body_tap* tap, bool& replayable);
  boost::asio::awaitable<common::outcome> stream_body(http::exchange& client, body_tap* tap);
  boost::asio::awaitable<common::outcome> read_head(bool replayable);
  boost::asio::awaitable<common::outcome> await_body();
  common::time_point within_total(common::time_point t) const { return std::min(t, total_); }
  common::outcome fail(common::outcome_kind kind, std::string message);
  void observe(std::string_view payload);
  void head_arrived();
  // A stream whose events time the endpoint (first token, per-token time).
  bool timed_stream() const { return observe_ && obs_.sse(); }
  void report_done();
  void learn_transfer(common::time_point now);
  double uncached_blocks();
  static void on_expire(void* self);

  worker_context& w_;
  const config::gateway_config* cfg_ = nullptr;  // the try's (try_spec::config)
  runtime::watchdog deadline_;
  upstream::link link_;  // the connection to the endpoint, during a try
  upstream::endpoint_ref ep_;
  std::unique_ptr<upstream_buffers> buf_;
  std::size_t begin_ = 0, end_ = 0;
  std::size_t pinned_ = 0;  // bytes at the buffer's start resp_ points into
  http::response_head resp_;
  std::string chunk_heads_;
  std::vector<boost::asio::const_buffer> out_;
  common::time_point sent_at_;
  std::string_view method_;
  http::exchange* client_ = nullptr;  // during run()
  bool reused_ = false;
  bool request_complete_ = false;
  bool body_held_ = false;
  config::upstream_timeouts timeouts_;
  common::time_point total_ = common::time_point::max();
  bool in_flight_ = false;
  // What this request teaches the endpoint's estimates.
  upstream::stream_observer obs_;
  metrics::route_metrics* rm_ = nullptr;
  common::time_point request_start_{}, picked_at_{};
  double queued_ = 0;  // the wait latency_aware expected from the endpoint's load at the pick
  double batch_at_pick_ = 1;  // the requests the endpoint held at the pick, this one included
  double prefill_ = 0;        // the prefill it costs the engine, counted until its first byte
  // The stream's per-token time without stalls: the gaps between its events and the tokens they
  // brought, gaps over 2x the mean so far left out.
  double steady_seconds_ = 0;
  std::size_t steady_tokens_ = 0;
  std::int32_t uncached_ = -1;  // prompt blocks the endpoint was not credited with (-1: none)
  std::int32_t prompt_blocks_ = 0;
  double deferred_ttft_ = -1;  // seconds, held until the usage says what was cached
  bool observe_ = false;       // scan the body (inference clusters, successful responses)
  bool answered_ = false;      // the endpoint's first byte (first SSE event of a stream) came
  bool complete_ = false;
  bool abandoned_ = false;
  bool down_ = false;  // the probes found the endpoint down during the try
  // Storage transfers: the bytes expected (try_spec) and counted at the endpoint, body bytes
  // relayed, when the head arrived, and the endpoint's transfers in flight at the pick.
  double transfer_ = 0, counted_transfer_ = 0;
  std::uint64_t relayed_ = 0;
  common::time_point head_at_{};
  double in_flight_at_pick_ = 0;
  // This gateway's requests in flight on the endpoint: this worker's and the others'.
  static double gateway_in_flight(const upstream::endpoint_stats& s) {
    return s.in_flight + (s.board ? s.board->others(s.worker) : 0);
  }
  std::optional<std::string_view> body_override_;
};

}  // namespace meridian::proxy
