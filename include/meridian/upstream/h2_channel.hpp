// upstream::h2_channel: one HTTP/2 connection (h2c, prior knowledge) to a backend carrying many
// calls at once, as gRPC backends are spoken to: nghttp2's client session between a reader and a
// writer over an upstream::link. A call is one stream: its request head and DATA go out, its
// response head, DATA and trailers come back, each awaited under a deadline; a call dropped early
// resets its stream. The nghttp2 types stay inside upstream. Owned by a worker (one channel per
// endpoint) and used on its thread.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "meridian/common/clock.hpp"
#include "meridian/upstream/link.hpp"

namespace meridian::upstream {

class h2_channel;
struct h2_call_state;

using h2_fields = std::vector<std::pair<std::string, std::string>>;

// One call on a channel, held by the try that makes it.
class h2_call {
 public:
  h2_call() = default;
  ~h2_call();  // a call still open is reset (CANCEL)
  h2_call(h2_call&&) noexcept;
  h2_call& operator=(h2_call&&) noexcept;
  explicit operator bool() const { return state_ != nullptr; }

  // Request body: more DATA (copied); `last` ends the request. False once the call failed.
  bool write(std::string_view data, bool last);
  // Waits for the response head; false when the call failed first (reset, the connection went)
  // or the deadline passed.
  boost::asio::awaitable<bool> headers(common::time_point deadline);
  int status() const;
  const h2_fields& response_fields() const;
  // The next response DATA (appended to `out`): `data`, `end` (trailers arrived, or the stream
  // ended), `failed` (reset or connection lost: error() says which) or `timeout`.
  enum class got { data, end, failed, timeout };
  boost::asio::awaitable<got> read(std::string& out, common::time_point deadline);
  const h2_fields& trailers() const;
  // It failed as refused (REFUSED_STREAM, or a stream past the backend's GOAWAY): the backend
  // never processed it, so it is safe to send elsewhere (RFC 9113 8.7).
  bool refused() const;
  // Why it failed ("reset by the backend (INTERNAL_ERROR)", "connection lost", ...).
  std::string_view error() const;
  // Resets the stream now (the client left).
  void cancel();

 private:
  friend class h2_channel;
  std::shared_ptr<h2_channel> channel_;
  h2_call_state* state_ = nullptr;
};

class h2_channel : public std::enable_shared_from_this<h2_channel> {
 public:
  struct impl;
  explicit h2_channel(std::unique_ptr<impl> p);
  ~h2_channel();

  // Connects to `to` (TCP; where `tls` says, the TLS handshake, which must agree on h2 by ALPN;
  // then the HTTP/2 preface and SETTINGS) by `deadline`. Null with `why` on failure.
  static boost::asio::awaitable<std::shared_ptr<h2_channel>> open(
      boost::asio::io_context& io, const common::clock& clock, const resolved_address& to,
      const tls_target& tls, common::time_point deadline, std::string& why);

  // Whether a new call may start: connected, no GOAWAY, under the backend's stream limit.
  bool usable() const;
  std::size_t calls() const;
  // Starts a call: `head` holds the pseudo-headers first (:method, :scheme, :authority, :path)
  // then the fields (names lower case); DATA follows through h2_call::write.
  h2_call start(const h2_fields& head);
  // Closes the connection (calls in flight fail).
  void close();
  // Takes no new call and closes once the calls in flight are done.
  void retire();

 private:
  friend class h2_call;
  std::unique_ptr<impl> p_;
};

}  // namespace meridian::upstream
