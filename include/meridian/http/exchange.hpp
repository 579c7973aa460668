// http::exchange: one request and its response as a handler sees them, whatever carried them
// (an HTTP/1.1 connection, or an HTTP/2 stream; over TLS or not). A handler reads the
// head, takes the body from the body source, answers through the response sink and learns of a
// client that left through the cancellation watch; how the bytes are framed on the wire is the
// codec's business. An exchange is owned by the codec that produced it and used on its worker
// thread while handler::serve runs.
#pragma once

#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <span>
#include <string_view>

#include "meridian/common/clock.hpp"
#include "meridian/common/error.hpp"
#include "meridian/http/parser.hpp"
#include "meridian/http/request_body.hpp"

namespace meridian::http {

enum class body_result { ok, malformed, too_large, timeout, client_gone };

// What a body check's status means to the handler (every codec's body source).
inline body_result body_result_of(request_body::status st) {
  switch (st) {
    case request_body::status::malformed:
      return body_result::malformed;
    case request_body::status::too_large:
      return body_result::too_large;
    default:
      return body_result::ok;
  }
}

// Something to stop when the client leaves (an upstream attempt).
class cancellable {
 public:
  virtual void cancel() = 0;

 protected:
  ~cancellable() = default;
};

class exchange {
 public:
  // ---- the request ----
  virtual const request_head& head() const = 0;
  virtual std::string_view request_id() const = 0;
  virtual std::string_view method() const = 0;
  virtual std::string_view path() const = 0;
  virtual common::time_point request_start() const = 0;
  // Who sent it: the peer's address, and the scheme it arrived over ("http"; "https" over TLS).
  virtual std::string_view client_ip() const = 0;
  virtual std::string_view scheme() const = 0;
  // Over TLS: the version negotiated ("TLSv1.3") and the verified client certificate's subject
  // (mutual TLS, RFC 2253); empty otherwise.
  virtual std::string_view tls_version() const { return {}; }
  virtual std::string_view client_subject() const { return {}; }
  // The protocol it arrived over, as ALPN names it: "http/1.1", "http/1.0", "h2".
  virtual std::string_view protocol() const { return "http/1.1"; }

  // ---- the body source ----
  // The body's framing as it arrived (HTTP/1.1 chunked bodies stay chunked in the buffer; a
  // codec without chunking buffers plain payload) and how far it has been checked.
  virtual const request_body& body() const = 0;
  // Reads until `want` raw body bytes are buffered (or the whole body, if smaller), checking
  // each byte's framing on arrival; the head stays readable. Nothing is consumed.
  virtual boost::asio::awaitable<body_result> buffer_body(std::size_t want) = 0;
  // True when buffer_body(want) would find what it needs without reading (checks the bytes).
  virtual bool body_buffered(std::size_t want) = 0;
  // The raw body bytes buffered and checked so far (consumed ones excluded).
  virtual std::string_view buffered_body() const = 0;
  // Marks the whole buffered body consumed (it was sent whole and answered).
  virtual void consume_body() = 0;
  // Streams: decodes buffered, checked body bytes into payload spans (reading more first when
  // none are buffered) and consumes them. The spans stay valid until the next call; the head
  // is no longer readable afterwards. n == 0 with ok means the body ended.
  virtual boost::asio::awaitable<body_result> read_body(std::span<std::string_view> spans,
                                                        std::size_t& n) = 0;
  virtual std::string_view body_error() const = 0;
  // The handler takes the request body as a stream beside the response (a bidirectional gRPC
  // call): the body may arrive until `until` (the call's deadline) instead of within
  // timeouts.body of the head. Only HTTP/2 streams carry such bodies; HTTP/1.1 keeps its limit.
  virtual void extend_body_deadline(common::time_point until) {}

  // ---- the response sink ----
  // Starts the response from a backend's head: hop-by-hop fields go, x-request-id is echoed and
  // the codec frames the body: `body` none, content_length (`length` bytes, declared), or a
  // stream of unknown length (chunked or until_close). Nothing is written before send().
  virtual void start_response(const response_head& head, body_kind body, std::uint64_t length) = 0;
  // Writes what is pending of the response (its head, the first time) and `payload`, framed as
  // the protocol needs; `last` ends the response. False when the client is gone (or was cut for
  // reading too slowly: note() says which). A response started and not ended by the time serve
  // returns was broken off, and the client can tell: no terminating chunk, the connection
  // closes (a stream is reset).
  virtual boost::asio::awaitable<bool> send(std::span<const std::string_view> payload,
                                            bool last) = 0;
  // Trailer fields to end the response with (HTTP/2: a HEADERS frame after the last DATA, as
  // gRPC's grpc-status); call before the send that ends it. HTTP/1.1 does not send them.
  virtual void set_trailers(std::span<const header> fields) {}
  // Fields the gateway adds to this request's response, whoever answers it (a backend's head
  // through start_response, or the gateway's own reply or reply_error): a tenant's rate-limit
  // headers. The fields are referenced, not copied: they must outlive the response's start.
  virtual void add_response_fields(std::span<const header> fields) = 0;
  // Whether the response declared its length (no room for anything beyond it).
  virtual bool response_sized() const = 0;
  // The gateway's own OpenAI-shaped answer.
  virtual boost::asio::awaitable<void> reply_error(common::error_kind kind,
                                                   std::string_view message) = 0;
  // A complete local response (admin pages). `allow`: the Allow header of a 405.
  virtual boost::asio::awaitable<void> reply(int status, std::string_view content_type,
                                             std::string_view body,
                                             std::string_view allow = {}) = 0;
  // Nothing more on this client's connection after this response (its bytes cannot be trusted).
  virtual void close_after_response() = 0;

  // ---- cancellation ----
  // While a backend works on the request, `target` is cancelled if the client leaves.
  virtual void watch_client(cancellable* target) = 0;
  virtual void unwatch_client() = 0;
  virtual bool client_gone() const = 0;

  // ---- facts for the handler's log ----
  virtual int status() const = 0;  // 0: nothing sent
  virtual std::uint64_t bytes_in() const = 0;
  virtual std::uint64_t bytes_out() const = 0;
  virtual std::string_view note() const = 0;
  virtual void set_note(std::string_view why) = 0;

 protected:
  ~exchange() = default;
};

// What a listener plugs into its codecs. Called on the worker thread.
class handler {
 public:
  virtual ~handler() = default;
  // Serves one request whose head has been read and checked; whatever it leaves unread of the
  // body makes the codec end the client's connection after the response.
  virtual boost::asio::awaitable<void> serve(exchange& ex) = 0;
  // A request the codec refused itself (a malformed or oversized head), already answered.
  virtual void rejected(exchange& ex) = 0;
};

}  // namespace meridian::http
