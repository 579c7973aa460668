#include "meridian/http/headers.hpp"

#include <charconv>

namespace meridian::http {
namespace {
void append_header(std::string& out, std::string_view name, std::string_view value) {
  out.append(name);
  out.append(": ");
  out.append(value);
  out.append("\r\n");
}

bool is_named(std::string_view n, std::string_view lower_name) {
  return n.size() == lower_name.size() && iequals(n, lower_name);
}

void append_framing(std::string& out, out_framing framing, std::uint64_t content_length) {
  if (framing == out_framing::content_length) {
    out.append("content-length: ");
    append_uint(out, content_length);
    out.append("\r\n");
  } else if (framing == out_framing::chunked) {
    out.append("transfer-encoding: chunked\r\n");
  }
}
}  // namespace

void append_uint(std::string& out, std::uint64_t v) {
  char buf[24];
  auto res = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, res.ptr);
}

std::string_view reason_phrase(int status) {
  // RFC 9110 section 15; an unregistered code gets an empty reason (allowed by RFC 9112 4).
  switch (status) {
    case 100:
      return "Continue";
    case 101:
      return "Switching Protocols";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 203:
      return "Non-Authoritative Information";
    case 204:
      return "No Content";
    case 205:
      return "Reset Content";
    case 206:
      return "Partial Content";
    case 300:
      return "Multiple Choices";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 304:
      return "Not Modified";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 402:
      return "Payment Required";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 406:
      return "Not Acceptable";
    case 407:
      return "Proxy Authentication Required";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 411:
      return "Length Required";
    case 412:
      return "Precondition Failed";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 415:
      return "Unsupported Media Type";
    case 416:
      return "Range Not Satisfiable";
    case 417:
      return "Expectation Failed";
    case 421:
      return "Misdirected Request";
    case 422:
      return "Unprocessable Content";
    case 425:
      return "Too Early";
    case 426:
      return "Upgrade Required";
    case 428:
      return "Precondition Required";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 451:
      return "Unavailable For Legal Reasons";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "";
  }
}

void build_upstream_request(std::string& out, const request_head& req, const forward_context& ctx,
                            out_framing framing, std::uint64_t content_length) {
  out.clear();
  out.append(req.method);
  out.push_back(' ');
  out.append(req.path);
  out.append(" HTTP/1.1\r\n");
  // HTTP/1.1 needs a Host: the client's; from a client that sent none (HTTP/1.0), the upstream's
  // name (an empty one, RFC 9112 3.2, is refused by nginx and others).
  append_header(out, "host", req.host.empty() ? ctx.fallback_host : req.host);
  for (const auto& h : req.fields()) {
    std::string_view n = h.name;
    if (req.is_hop_by_hop(n) || is_named(n, "host") || is_named(n, "content-length") ||
        is_named(n, "expect") || is_named(n, "x-forwarded-for") ||
        is_named(n, "x-forwarded-proto") || is_named(n, "x-forwarded-host") ||
        is_named(n, "x-request-id"))
      continue;
    append_header(out, n, h.value);
  }
  // X-Forwarded-For is a list: keep what earlier proxies wrote, in order, then add our peer.
  out.append("x-forwarded-for: ");
  for (const auto& h : req.fields()) {
    if (!is_named(h.name, "x-forwarded-for") || h.value.empty()) continue;
    out.append(h.value);
    out.append(", ");
  }
  out.append(ctx.client_ip);
  out.append("\r\n");
  append_header(out, "x-forwarded-proto", ctx.proto);
  if (!req.host.empty()) append_header(out, "x-forwarded-host", req.host);
  append_header(out, "x-request-id", ctx.request_id);
  append_framing(out, framing, content_length);
  out.append("\r\n");
}

void build_downstream_response(std::string& out, const response_head& resp,
                               std::string_view request_id, out_framing framing,
                               std::uint64_t content_length, bool keep_alive, int client_minor) {
  out.clear();
  out.append("HTTP/1.1 ");
  append_uint(out, static_cast<std::uint64_t>(resp.status));
  out.push_back(' ');
  out.append(resp.reason.empty() ? reason_phrase(resp.status) : resp.reason);
  out.append("\r\n");
  for (const auto& h : resp.fields()) {
    std::string_view n = h.name;
    // A bodiless response (HEAD, 304) keeps the backend's Content-Length: it describes the
    // representation, not this message's framing.
    if (resp.is_hop_by_hop(n) || is_named(n, "x-request-id") ||
        (framing != out_framing::none && is_named(n, "content-length")))
      continue;
    append_header(out, n, h.value);
  }
  if (!request_id.empty()) append_header(out, "x-request-id", request_id);
  append_framing(out, framing, content_length);
  if (!keep_alive)
    out.append("connection: close\r\n");
  else if (client_minor == 0)
    out.append("connection: keep-alive\r\n");
  out.append("\r\n");
}

void build_local_response(std::string& out, int status, std::string_view content_type,
                          std::string_view body, bool keep_alive, std::string_view request_id,
                          int retry_after_s, std::string_view allow) {
  out.clear();
  out.append("HTTP/1.1 ");
  append_uint(out, static_cast<std::uint64_t>(status));
  out.push_back(' ');
  out.append(reason_phrase(status));
  out.append("\r\n");
  if (!content_type.empty()) append_header(out, "content-type", content_type);
  out.append("content-length: ");
  append_uint(out, body.size());
  out.append("\r\n");
  if (!request_id.empty()) append_header(out, "x-request-id", request_id);
  if (retry_after_s > 0) {
    out.append("retry-after: ");
    append_uint(out, static_cast<std::uint64_t>(retry_after_s));
    out.append("\r\n");
  }
  if (!allow.empty()) append_header(out, "allow", allow);
  if (!keep_alive) out.append("connection: close\r\n");
  out.append("\r\n");
  out.append(body);
}

void make_request_id(std::string& out, std::string_view from_client, common::random_source& rng) {
  bool usable = !from_client.empty() && from_client.size() <= 128;
  for (unsigned char c : from_client)
    if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\') usable = false;
  if (usable) {
    out.assign(from_client);
    return;
  }
  static constexpr char hex[] = "0123456789abcdef";
  out.resize(32);
  std::uint64_t a = rng.next(), b = rng.next();
  for (int i = 0; i < 16; ++i) {
    out[i] = hex[(a >> (i * 4)) & 15];
    out[16 + i] = hex[(b >> (i * 4)) & 15];
  }
}

bool idempotent(std::string_view method) {
  return method == "GET" || method == "HEAD" || method == "OPTIONS" || method == "TRACE" ||
         method == "PUT" || method == "DELETE";
}

}  // namespace meridian::http
