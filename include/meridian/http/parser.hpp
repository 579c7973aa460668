// Strict HTTP/1.1 head parsing (RFC 9110/9112) for an intermediary: requests from clients and
// responses from backends. Zero allocation: results are views into the caller's buffer and stay
// valid while that buffer is unchanged. Used by one connection at a time (worker thread).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "meridian/common/field.hpp"

namespace meridian::http {

using header = common::field;

enum class parse_status { complete, incomplete, error };

enum class parse_error {
  none,
  head_too_large,
  too_many_headers,
  bad_line_ending,  // bare CR or bare LF
  bad_request_line,
  bad_method,
  bad_target,
  bad_version,
  bad_header_name,   // empty, non-token, or whitespace before the colon
  bad_header_value,  // control characters
  obs_fold,          // a header line that starts with SP/HTAB
  missing_host,
  duplicate_host,
  bad_content_length,
  conflicting_content_length,
  content_length_and_transfer_encoding,
  bad_transfer_encoding,  // not ending in chunked, or a coding we do not implement
  chunked_on_http10,
  body_too_large,
  bad_status_line,
};

std::string_view describe(parse_error e);

enum class body_kind { none, content_length, chunked, until_close };

struct head_limits {
  std::size_t max_head_bytes = 64 * 1024;
  std::size_t max_headers = 100;
};

// Fields every message head has; `headers` points into caller storage of max_headers entries.
struct message_head {
  int version_minor = 1;  // HTTP/1.x
  std::span<header> headers;
  std::size_t header_count = 0;
  std::size_t head_size = 0;  // bytes of the head, including the final CRLF CRLF
  body_kind body = body_kind::none;
  std::uint64_t content_length = 0;
  bool keep_alive = true;
  // Header names listed in Connection (other than close/keep-alive): hop-by-hop, never forwarded.
  std::string_view connection_tokens[8];
  std::size_t connection_token_count = 0;
  bool connection_tokens_overflow = false;

  std::span<const header> fields() const { return headers.first(header_count); }
  // True for headers that must not cross the proxy (RFC 9110 §7.6.1, plus Proxy-*).
  bool is_hop_by_hop(std::string_view name) const;
  // First value of a header (case-insensitive name), or empty.
  std::string_view find(std::string_view name) const;
  // How many times a header appears (an empty value counts).
  std::size_t count(std::string_view name) const;
};

struct request_head : message_head {
  std::string_view method;
  std::string_view target;  // as sent
  std::string_view path;    // origin-form path (query included); from absolute-form too
  std::string_view host;    // Host header, or the authority of an absolute-form target
  bool expect_continue = false;
};

struct response_head : message_head {
  int status = 0;
  std::string_view reason;
};

// Finds the end of a head (CRLF CRLF) at or after `from`; returns its size or 0 if not there yet.
std::size_t find_head_end(std::string_view buf, std::size_t from = 0);

// Parses a complete request head at the start of `buf` (call when find_head_end succeeded or to
// test for errors). `storage` must hold limits.max_headers entries.
parse_status parse_request(std::string_view buf, const head_limits& limits,
                           std::span<header> storage, request_head& out, parse_error& err);

// `request_method` decides whether a body follows (HEAD never has one, 2xx to CONNECT neither).
parse_status parse_response(std::string_view buf, const head_limits& limits,
                            std::span<header> storage, std::string_view request_method,
                            response_head& out, parse_error& err);

bool iequals(std::string_view a, std::string_view b);
bool is_token(std::string_view s);

}  // namespace meridian::http
