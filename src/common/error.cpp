#include "meridian/common/error.hpp"

namespace meridian::common {

int status_of(error_kind kind) {
  switch (kind) {
    case error_kind::bad_request:
      return 400;
    case error_kind::unauthorized:
    case error_kind::invalid_api_key:
      return 401;
    case error_kind::forbidden:
    case error_kind::model_not_allowed:
      return 403;
    case error_kind::not_found:
    case error_kind::model_not_found:
      return 404;
    case error_kind::method_not_allowed:
      return 405;
    case error_kind::conflict:
      return 409;
    case error_kind::request_timeout:
      return 408;
    case error_kind::payload_too_large:
      return 413;
    case error_kind::too_many_requests:
    case error_kind::rate_limit_exceeded:
      return 429;
    case error_kind::header_too_large:
      return 431;
    case error_kind::internal:
      return 500;
    case error_kind::upstream_unavailable:
      return 502;
    case error_kind::no_healthy_upstream:
    case error_kind::draining:
    case error_kind::overloaded:
      return 503;
    case error_kind::upstream_timeout:
      return 504;
  }
  return 500;
}

error_source source_of(error_kind kind) {
  switch (kind) {
    case error_kind::bad_request:
    case error_kind::unauthorized:
    case error_kind::forbidden:
    case error_kind::method_not_allowed:
    case error_kind::conflict:
    case error_kind::not_found:
    case error_kind::model_not_found:
    case error_kind::request_timeout:
    case error_kind::payload_too_large:
    case error_kind::header_too_large:
    case error_kind::too_many_requests:
    case error_kind::invalid_api_key:
    case error_kind::model_not_allowed:
    case error_kind::rate_limit_exceeded:
      return error_source::downstream;
    case error_kind::upstream_unavailable:
    case error_kind::upstream_timeout:
    case error_kind::no_healthy_upstream:
      return error_source::upstream;
    default:
      return error_source::internal;
  }
}

bool outcome::retry_safe() const {
  switch (kind) {
    case outcome_kind::pool_exhausted:
    case outcome_kind::connect_failed:
    case outcome_kind::connect_timeout:
    case outcome_kind::stale_connection:
    case outcome_kind::reset_before_request:
      return true;
    default:
      return false;
  }
}

error_source outcome::source() const {
  switch (kind) {
    case outcome_kind::ok:
      return error_source::upstream;
    case outcome_kind::client_gone:
    case outcome_kind::bad_request_body:
    case outcome_kind::request_body_too_large:
    case outcome_kind::request_body_timeout:
      return error_source::downstream;
    case outcome_kind::pool_exhausted:
    case outcome_kind::abandoned:
      return error_source::internal;
    default:
      return error_source::upstream;
  }
}

error_kind outcome::client_error() const {
  switch (kind) {
    case outcome_kind::pool_exhausted:
      return error_kind::overloaded;
    case outcome_kind::endpoint_down:
      return error_kind::no_healthy_upstream;
    case outcome_kind::connect_timeout:
    case outcome_kind::response_timeout:
    case outcome_kind::stalled_response:
      return error_kind::upstream_timeout;
    case outcome_kind::bad_request_body:
      return error_kind::bad_request;
    case outcome_kind::request_body_too_large:
      return error_kind::payload_too_large;
    case outcome_kind::request_body_timeout:
      return error_kind::request_timeout;
    case outcome_kind::ok:
    case outcome_kind::client_gone:
    case outcome_kind::abandoned:
      return error_kind::internal;
    default:
      return error_kind::upstream_unavailable;
  }
}

std::string_view type_of(error_kind kind) {
  switch (source_of(kind)) {
    case error_source::downstream:
      return "invalid_request_error";
    case error_source::upstream:
      return "upstream_error";
    case error_source::internal:
      return "server_error";
  }
  return "server_error";
}

std::string_view code_of(error_kind kind) {
  switch (kind) {
    case error_kind::bad_request:
      return "bad_request";
    case error_kind::unauthorized:
      return "unauthorized";
    case error_kind::forbidden:
      return "forbidden";
    case error_kind::method_not_allowed:
      return "method_not_allowed";
    case error_kind::conflict:
      return "conflict";
    case error_kind::not_found:
      return "route_not_found";
    case error_kind::model_not_found:
      return "model_not_found";
    case error_kind::request_timeout:
      return "request_timeout";
    case error_kind::payload_too_large:
      return "payload_too_large";
    case error_kind::header_too_large:
      return "header_too_large";
    case error_kind::too_many_requests:
      return "rate_limited";
    case error_kind::invalid_api_key:
      return "invalid_api_key";
    case error_kind::model_not_allowed:
      return "model_not_allowed";
    case error_kind::rate_limit_exceeded:
      return "rate_limit_exceeded";
    case error_kind::upstream_unavailable:
      return "upstream_unavailable";
    case error_kind::no_healthy_upstream:
      return "no_healthy_upstream";
    case error_kind::draining:
      return "draining";
    case error_kind::overloaded:
      return "overloaded";
    case error_kind::upstream_timeout:
      return "upstream_timeout";
    case error_kind::internal:
      return "internal_error";
  }
  return "internal_error";
}

int retry_after_of(error_kind kind) {
  switch (kind) {
    case error_kind::too_many_requests:
    case error_kind::no_healthy_upstream:
    case error_kind::overloaded:
      return 1;
    case error_kind::draining:
      return 5;
    default:
      return 0;
  }
}

namespace {
constexpr bool needs_escape(unsigned char c) {
  return c < 0x20 || c == '"' || c == '\\' || c == 0x7f;
}
}  // namespace

void json_escape_append(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  // Runs of plain characters are appended whole: access-log fields rarely need escaping, and
  // a per-character append was a tenth of a request's instructions.
  std::size_t run = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (!needs_escape(c)) continue;
    out.append(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"':
        out.append("\\\"");
        break;
      case '\\':
        out.append("\\\\");
        break;
      case '\n':
        out.append("\\n");
        break;
      case '\r':
        out.append("\\r");
        break;
      case '\t':
        out.append("\\t");
        break;
      default:
        out.append("\\u00");
        out.push_back(hex[c >> 4]);
        out.push_back(hex[c & 15]);
    }
  }
  out.append(s.data() + run, s.size() - run);
}

int grpc_status_of(error_kind kind) {
  switch (kind) {
    case error_kind::bad_request:
      return 3;  // INVALID_ARGUMENT
    case error_kind::unauthorized:
    case error_kind::invalid_api_key:
      return 16;  // UNAUTHENTICATED
    case error_kind::forbidden:
    case error_kind::model_not_allowed:
      return 7;  // PERMISSION_DENIED
    case error_kind::not_found:
    case error_kind::model_not_found:
      return 5;  // NOT_FOUND
    case error_kind::method_not_allowed:
      return 12;  // UNIMPLEMENTED
    case error_kind::conflict:
      return 9;  // FAILED_PRECONDITION
    case error_kind::payload_too_large:
    case error_kind::header_too_large:
    case error_kind::too_many_requests:
    case error_kind::rate_limit_exceeded:
    case error_kind::overloaded:
      return 8;  // RESOURCE_EXHAUSTED
    case error_kind::upstream_unavailable:
    case error_kind::no_healthy_upstream:
    case error_kind::draining:
      return 14;  // UNAVAILABLE
    case error_kind::upstream_timeout:
    case error_kind::request_timeout:
      return 4;  // DEADLINE_EXCEEDED
    case error_kind::internal:
      return 13;  // INTERNAL
  }
  return 2;  // UNKNOWN
}

std::string grpc_message(std::string_view message) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : message) {
    if (c >= 0x20 && c <= 0x7e && c != '%') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out;
}

std::string error_body(error_kind kind, std::string_view message) {
  std::string out;
  out.reserve(96 + message.size());
  out.append(R"({"error":{"message":")");
  json_escape_append(out, message);
  out.append(R"(","type":")");
  out.append(type_of(kind));
  out.append(R"(","code":")");
  out.append(code_of(kind));
  out.append("\"}}");
  return out;
}

}  // namespace meridian::common
