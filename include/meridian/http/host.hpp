// What serves client connections, seen from both sides without either knowing the other: a
// connection_host (a proxy worker, the admin server) gives its codecs their settings, clock,
// metrics and handler, and keeps the sessions they open (an HTTP/1.1 connection today) in a list
// it ticks, drains and aborts. Listeners hand accepted sockets to a host; the host never sees a
// codec type. Owned and used by one worker thread (`open` is read by the control thread).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/intrusive/list_hook.hpp>

#include <atomic>
#include <cstdint>

#include "meridian/common/clock.hpp"
#include "meridian/common/random.hpp"
#include "meridian/http/exchange.hpp"
#include "meridian/http/parser.hpp"

namespace meridian::metrics {
class worker_metrics;
}

namespace meridian::http {

struct connection_settings {
  head_limits limits;
  std::uint64_t max_body_bytes = 32 * 1024 * 1024;
  common::duration header_timeout = std::chrono::seconds(10);  // absolute, from the first byte
  common::duration body_timeout = std::chrono::seconds(30);    // absolute, from the head's end
  common::duration idle_timeout = std::chrono::seconds(60);    // keep-alive, and each write
  // The slowest a client may move a body (its request body in, a response out) once it has
  // used up `rate_window` of waiting: each byte earns 1/min_rate seconds of waiting, never more
  // than the window. 0: no floor. Below it: 408 (request), the connection closed (response).
  std::uint64_t min_rate = 0;
  common::duration rate_window = std::chrono::seconds(10);
  // HTTP/2: streams a client may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS; also the
  // most requests of one connection being served, reset ones included), and each stream's
  // receive window (what one stream's request body may have in flight).
  std::uint32_t max_concurrent_streams = 100;
  std::uint32_t stream_window = 256 * 1024;
};

// Per-worker things every connection of a host shares.
struct connection_env {
  connection_settings settings;
  const common::clock* clock = &common::steady();
  common::random_source* rng = nullptr;
  metrics::worker_metrics* metrics = nullptr;  // null: not counted (admin)
  bool draining = false;                       // set by the host: finish, then close
  std::atomic<std::size_t> open{0};            // connections alive (read by the control thread)
};

using list_hook =
    boost::intrusive::list_base_hook<boost::intrusive::link_mode<boost::intrusive::auto_unlink>>;

// One client connection as its host controls it, whatever its protocol. Worker thread.
class session : public list_hook {
 public:
  // Arms the client-gone watch of a request waiting on a backend (the host's 50 ms tick).
  virtual void tick() = 0;
  // Closes the connection if no request is in progress on it (drain).
  virtual void close_if_idle() = 0;
  // Closes it now; a request in progress is cancelled (drain timeout, shutdown).
  virtual void abort() = 0;

 protected:
  ~session() = default;
};

class connection_host {
 public:
  virtual connection_env& env() = 0;
  virtual handler& served_by() = 0;
  // Keeps a session it started, until the session ends (it unlinks itself).
  virtual void track(session& s) = 0;
  virtual std::size_t max_connections() const = 0;
  virtual boost::asio::io_context& io() = 0;

 protected:
  ~connection_host() = default;
};

}  // namespace meridian::http
