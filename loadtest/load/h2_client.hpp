// meridian-load over HTTP/2 (--http2): one h2 connection carries the requests of --streams slots,
// each slot a `connection` of the worker's loops whose requests become streams of the shared
// session (nghttp2's client side). h2c with prior knowledge on http://, h2 by ALPN on https://.
// Each stream is timed on its own: TTFT from its first SSE token event (or, for KServe v2 gRPC,
// its first response message), ITL between its own events. Runs on the worker's thread.
#pragma once
#include <memory>

#include "load/worker.hpp"

namespace meridian::loadtest::runner {

struct h2_link;

// One h2 connection shared by the slots that point at it. Connects on first use and again after a
// failure; a failure ends every stream it carried (transport error) but not the slots.
class h2_session {
 public:
  explicit h2_session(worker* w);
  ~h2_session();
  h2_session(const h2_session&) = delete;
  h2_session& operator=(const h2_session&) = delete;

  // Sends the request built for `slot` (its bytes, or the builder's fixed request, then `extra`
  // body bytes) as one stream and waits for its end; fills `o` and the time it went out.
  asio::awaitable<void> request(connection* slot, std::string_view extra, outcome& o,
                                steady::time_point& sent_at);
  // Closes the connection now: its streams end with a transport error.
  void close();
  // A slot's loop has ended; the last one closes the connection.
  void slot_done();
  int slots = 0;

 private:
  asio::awaitable<std::shared_ptr<h2_link>> connected();
  worker* w_;
  std::shared_ptr<h2_link> link_;
  bool connecting_ = false;
  asio::steady_timer connect_wait_;  // slots waiting while another slot connects
};

}  // namespace meridian::loadtest::runner
