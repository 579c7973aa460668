// A one-shot HTTP/1.1 GET client for the control thread: health and RTT probes, backend /metrics
// scrapes and /v1/models discovery. Each call owns its connection; nothing is shared between calls.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <cstddef>
#include <string>

#include "meridian/common/clock.hpp"
#include "meridian/upstream/link.hpp"

namespace meridian::probe {

struct fetch_result {
  bool ok = false;  // a complete response was read (any status)
  // Why not, for logs: "connect refused", "timed out while connecting", "timed out waiting for
  // the response", "malformed response head: ...", "body exceeds N bytes",
  // "connection closed mid-body", ...
  std::string error;
  int status = 0;
  double connect_seconds = -1;   // TCP connect
  double handshake_seconds = -1;  // the TLS handshake after it (fetch_request::tls)
  double response_seconds = -1;  // request written -> final response head parsed
  double total_seconds = -1;     // the whole call, set whether or not it succeeded
  std::string content_type;
  std::string body;  // de-chunked
};

struct fetch_request {
  boost::asio::ip::tcp::endpoint endpoint;
  std::string host;  // Host header value ("host:port" as configured)
  std::string path;  // origin-form, e.g. /health
  // One deadline for the whole exchange, connect included.
  std::chrono::nanoseconds timeout{std::chrono::seconds(1)};
  std::size_t max_body = 4 * 1024 * 1024;
  // Where the endpoint speaks TLS: the handshake after the TCP connect (verified as its cluster
  // says; a failure ends the call), timed on its own.
  upstream::tls_target tls;
};

// GETs `req.path` over a new TCP connection (so connect time is measured every time; TLS over
// it where req.tls says) with
// `Connection: close`, and reads the whole response: Content-Length, chunked or until close.
// Interim 1xx responses are skipped. Durations are read from `clock`, which must outlive the
// call; the deadline itself runs on the executor's steady timer, so a stopped test clock cannot
// make a call hang. Never throws: every failure is reported in the result.
boost::asio::awaitable<fetch_result> fetch(fetch_request req, const common::clock& clock);

}  // namespace meridian::probe
