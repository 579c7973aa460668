// Serialising the heads the gateway sends: requests re-framed for backends, responses for
// clients, and the gateway's own responses. Appends into caller-owned strings that are reused
// across requests (no allocation once warm). Worker thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "meridian/common/random.hpp"
#include "meridian/http/parser.hpp"

namespace meridian::http {

struct forward_context {
  std::string_view client_ip;
  std::string_view proto = "http";
  std::string_view request_id;
  // The Host sent when the client sent none (HTTP/1.0): the upstream's own name, as nginx sends
  // its upstream's ($proxy_host); empty: an empty Host (RFC 9112 3.2), which nginx refuses.
  std::string_view fallback_host = {};
};

// How a body is framed on the wire we write.
enum class out_framing { none, content_length, chunked, close_delimited };

// Request to a backend: origin-form target, Host kept, hop-by-hop removed, X-Forwarded-* and
// x-request-id set, and exactly one framing header (never the client's).
void build_upstream_request(std::string& out, const request_head& req, const forward_context& ctx,
                            out_framing framing, std::uint64_t content_length);

// Response to a client: hop-by-hop removed, x-request-id echoed, framing re-stated.
void build_downstream_response(std::string& out, const response_head& resp,
                               std::string_view request_id, out_framing framing,
                               std::uint64_t content_length, bool keep_alive, int client_minor);

// The gateway's own response (errors, admin pages).
void build_local_response(std::string& out, int status, std::string_view content_type,
                          std::string_view body, bool keep_alive, std::string_view request_id = {},
                          int retry_after_s = 0, std::string_view allow = {});

// The request's id: the client's x-request-id where it is usable (printable ASCII without
// quotes or backslashes, 1 to 128 bytes), else 32 random hex digits.
void make_request_id(std::string& out, std::string_view from_client, common::random_source& rng);

std::string_view reason_phrase(int status);
// RFC 9110 9.2.2: GET, HEAD, OPTIONS, TRACE, PUT and DELETE may be sent again automatically.
bool idempotent(std::string_view method);
void append_uint(std::string& out, std::uint64_t v);

}  // namespace meridian::http
