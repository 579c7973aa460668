// Errors the gateway itself produces: where they come from, whether a retry is safe, and the
// OpenAI-shaped body and status they turn into. Plain values; any thread.
#pragma once

#include <string>
#include <string_view>

namespace meridian::common {

enum class error_source { downstream, upstream, internal };

enum class error_kind {
  bad_request,           // 400: malformed or unsafe framing from the client
  not_found,             // 404: no route
  payload_too_large,     // 413
  header_too_large,      // 431
  too_many_requests,     // 429
  upstream_unavailable,  // 502: refused, reset or malformed before a response
  no_healthy_upstream,   // 503
  draining,              // 503
  overloaded,            // 503: connection cap
  upstream_timeout,      // 504
  request_timeout,       // 408
  internal,              // 500
};

struct gateway_error {
  error_kind kind;
  std::string message;
};

int status_of(error_kind kind);
error_source source_of(error_kind kind);
// True when nothing reached a backend, so sending the request elsewhere cannot duplicate work.
bool retry_safe(error_kind kind);
std::string_view type_of(error_kind kind);  // OpenAI "type"
std::string_view code_of(error_kind kind);  // OpenAI "code"
// Seconds for Retry-After, or 0 for none.
int retry_after_of(error_kind kind);

// {"error":{"message":"...","type":"...","code":"..."}} with the message JSON-escaped.
std::string error_body(error_kind kind, std::string_view message);

// Appends s to out with JSON string escaping (no surrounding quotes).
void json_escape_append(std::string& out, std::string_view s);

}  // namespace meridian::common
