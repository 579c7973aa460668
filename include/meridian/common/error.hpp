// Errors the gateway itself produces and the outcome of one upstream attempt: where a failure
// came from, whether a retry is safe, what already reached the client, and the OpenAI-shaped
// body and status it turns into. Plain values; any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace meridian::common {

enum class error_source { downstream, upstream, internal };

enum class error_kind {
  bad_request,         // 400: malformed or unsafe framing from the client
  unauthorized,        // 401: an admin request without the right bearer token
  forbidden,           // 403: an admin request the listener's exposure does not allow
  not_found,           // 404: no route
  method_not_allowed,  // 405 (admin pages)
  conflict,            // 409: an admin request the gateway's state refuses (undrain while stopping)
  model_not_found,     // 404: no endpoint serves the model the body names
  payload_too_large,   // 413
  header_too_large,    // 431
  too_many_requests,   // 429
  invalid_api_key,     // 401: a tenant's key missing or unknown
  model_not_allowed,   // 403: a model the tenant may not use
  rate_limit_exceeded, // 429: over a tenant's limit (the caller sends Retry-After)
  upstream_unavailable,  // 502: refused, reset or malformed before a response
  no_healthy_upstream,   // 503
  draining,              // 503
  overloaded,            // 503: connection cap
  upstream_timeout,      // 504
  request_timeout,       // 408
  internal,              // 500
};

// How one upstream attempt ended.
enum class outcome_kind {
  ok,                     // a response head arrived (and, after the relay, its body)
  pool_exhausted,         // no connection could be opened: the endpoint's cap is reached
  connect_failed,         // refused or unreachable
  connect_timeout,        //
  stale_connection,       // a pooled connection was found closed before any response byte
  reset_before_request,   // a fresh connection failed before any request byte was written
  reset_before_response,  // the backend closed without a response head
  endpoint_down,          // the probes found the endpoint down before it answered
  response_timeout,       // no response head in time
  bad_response,           // malformed or oversized response head
  reset_during_response,  // the backend failed after the response started
  stalled_response,       // the backend went quiet mid-response past the idle timeout
  client_gone,            // the client left; nothing more is owed to it
  abandoned,              // another attempt of the same request (a hedge) answered first
  bad_request_body,       // the client's body is malformed (framing)
  request_body_too_large,
  request_body_timeout,
};

struct outcome {
  outcome_kind kind = outcome_kind::ok;
  std::uint64_t bytes_to_client = 0;  // response bytes already written downstream
  int status = 0;                     // the response status once a head arrived
  std::string message;                // for the client (when nothing was sent) and the log

  bool ok() const { return kind == outcome_kind::ok; }
  // Nothing of this request reached a backend's application, so sending it again (elsewhere or
  // on a fresh connection) cannot duplicate work (RFC 9110 §9.2.2 for non-idempotent methods):
  // the connection failed, or failed before a request byte was written.
  bool retry_safe() const;
  error_source source() const;
  // The gateway's answer when the attempt failed before anything reached the client.
  error_kind client_error() const;
};

int status_of(error_kind kind);
error_source source_of(error_kind kind);
std::string_view type_of(error_kind kind);  // OpenAI "type"
std::string_view code_of(error_kind kind);  // OpenAI "code"
// Seconds for Retry-After, or 0 for none.
int retry_after_of(error_kind kind);
// The gRPC status a gRPC client gets for the gateway's own error (UNAVAILABLE 14 for an
// upstream that failed, DEADLINE_EXCEEDED 4, RESOURCE_EXHAUSTED 8 for shed or too large,
// NOT_FOUND 5, INVALID_ARGUMENT 3, ...).
int grpc_status_of(error_kind kind);
// grpc-message's value: `message` percent-encoded as gRPC over HTTP/2 says.
std::string grpc_message(std::string_view message);

// {"error":{"message":"...","type":"...","code":"..."}} with the message JSON-escaped.
std::string error_body(error_kind kind, std::string_view message);

// Appends s to out with JSON string escaping (no surrounding quotes).
void json_escape_append(std::string& out, std::string_view s);

}  // namespace meridian::common
