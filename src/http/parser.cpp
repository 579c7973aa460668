#include "meridian/http/parser.hpp"

#include <algorithm>
#include <array>
#include <cstring>

#include "meridian/http/target.hpp"

namespace meridian::http {
namespace {

constexpr std::array<bool, 256> make_tchar() {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
  return t;
}
constexpr auto tchar = make_tchar();

constexpr unsigned char lower_c(unsigned char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<unsigned char>(c + 32) : c;
}

// field-vchar / obs-text / SP / HTAB (RFC 9110 §5.5); everything else in a value is rejected.
bool valid_value_char(unsigned char c) {
  return c == '\t' || (c >= 0x20 && c != 0x7f);
}

std::string_view trim_ows(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

// Calls f(token) for each element of a comma-separated list, skipping empty elements.
template <class F>
bool for_each_list_item(std::string_view v, F&& f) {
  while (true) {
    auto comma = v.find(',');
    auto item = trim_ows(v.substr(0, comma));
    if (!item.empty() && !f(item)) return false;
    if (comma == std::string_view::npos) return true;
    v.remove_prefix(comma + 1);
  }
}

bool parse_decimal(std::string_view s, std::uint64_t& out) {
  if (s.empty() || s.size() > 18) return false;  // 18 digits cannot overflow
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  out = v;
  return true;
}

// Splits the next CRLF-terminated line starting at `pos`; rejects bare CR and bare LF.
// Returns false on a bad line ending; `line` excludes the CRLF.
bool next_line(std::string_view buf, std::size_t& pos, std::string_view& line) {
  const char* base = buf.data();
  const void* lf = std::memchr(base + pos, '\n', buf.size() - pos);
  if (!lf) return false;
  std::size_t lf_at = static_cast<std::size_t>(static_cast<const char*>(lf) - base);
  if (lf_at == pos || base[lf_at - 1] != '\r') return false;
  line = buf.substr(pos, lf_at - 1 - pos);
  if (std::memchr(line.data(), '\r', line.size())) return false;
  pos = lf_at + 1;
  return true;
}

struct framing_state {
  bool saw_cl = false;
  bool saw_te = false;
  bool te_chunked_last = false;
  bool te_bad = false;
  bool cl_conflict = false;
  bool cl_bad = false;
  bool saw_close = false;
  bool saw_keep_alive = false;
  std::uint64_t cl = 0;
};

// Parses the header lines after the start line into `out`, collecting framing facts.
parse_status parse_fields(std::string_view buf, std::size_t pos, const head_limits& limits,
                          std::span<header> storage, message_head& out, framing_state& fs,
                          parse_error& err) {
  out.headers = storage;
  out.header_count = 0;
  while (true) {
    if (pos + 2 <= buf.size() && buf[pos] == '\r' && buf[pos + 1] == '\n') {
      out.head_size = pos + 2;
      return parse_status::complete;
    }
    std::string_view line;
    if (!next_line(buf, pos, line)) {
      err = parse_error::bad_line_ending;
      return parse_status::error;
    }
    if (line.front() == ' ' || line.front() == '\t') {
      err = parse_error::obs_fold;
      return parse_status::error;
    }
    auto colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      err = parse_error::bad_header_name;
      return parse_status::error;
    }
    auto name = line.substr(0, colon);
    for (unsigned char c : name) {
      if (!tchar[c]) {  // also rejects "Name : value" (whitespace before the colon)
        err = parse_error::bad_header_name;
        return parse_status::error;
      }
    }
    auto value = line.substr(colon + 1);
    for (unsigned char c : value) {
      if (!valid_value_char(c)) {
        err = parse_error::bad_header_value;
        return parse_status::error;
      }
    }
    value = trim_ows(value);
    if (out.header_count >= storage.size() || out.header_count >= limits.max_headers) {
      err = parse_error::too_many_headers;
      return parse_status::error;
    }
    storage[out.header_count++] = header{name, value};

    // Framing and connection management; names are short, compare by length first.
    if (name.size() == 14 && iequals(name, "content-length")) {
      bool ok = for_each_list_item(value, [&](std::string_view item) {
        std::uint64_t v = 0;
        if (!parse_decimal(item, v)) {
          fs.cl_bad = true;
          return false;
        }
        if (fs.saw_cl && v != fs.cl) fs.cl_conflict = true;
        fs.saw_cl = true;
        fs.cl = v;
        return true;
      });
      if (!ok || value.empty()) fs.cl_bad = true;
    } else if (name.size() == 17 && iequals(name, "transfer-encoding")) {
      fs.saw_te = true;
      for_each_list_item(value, [&](std::string_view item) {
        // chunked must be last and appear once; any coding after it breaks framing.
        if (fs.te_chunked_last) fs.te_bad = true;
        if (iequals(item, "chunked"))
          fs.te_chunked_last = true;
        else
          fs.te_bad = true;  // we implement no other transfer coding
        return true;
      });
      if (trim_ows(value).empty()) fs.te_bad = true;
    } else if (name.size() == 10 && iequals(name, "connection")) {
      for_each_list_item(value, [&](std::string_view item) {
        if (iequals(item, "close"))
          fs.saw_close = true;
        else if (iequals(item, "keep-alive"))
          fs.saw_keep_alive = true;
        else if (out.connection_token_count < std::size(out.connection_tokens))
          out.connection_tokens[out.connection_token_count++] = item;
        else
          out.connection_tokens_overflow = true;
        return true;
      });
    }
  }
}

// The start line is not complete: too large, badly terminated, or just not all here yet.
parse_status no_start_line(std::string_view buf, const head_limits& limits, parse_error& err) {
  if (buf.size() > limits.max_head_bytes) {
    err = parse_error::head_too_large;
    return parse_status::error;
  }
  if (buf.find('\n') != std::string_view::npos) {
    err = parse_error::bad_line_ending;
    return parse_status::error;
  }
  return parse_status::incomplete;
}

// method SP request-target SP HTTP-version, single spaces only; the target must be one of the
// forms an intermediary accepts (target.hpp).
bool parse_request_line(std::string_view line, request_head& out, std::string_view& authority,
                        parse_error& err) {
  auto sp1 = line.find(' ');
  auto sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) {
    err = parse_error::bad_request_line;
    return false;
  }
  out.method = line.substr(0, sp1);
  out.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  auto version = line.substr(sp2 + 1);
  if (!is_token(out.method)) {
    err = parse_error::bad_method;
    return false;
  }
  if (version == "HTTP/1.1") {
    out.version_minor = 1;
  } else if (version == "HTTP/1.0") {
    out.version_minor = 0;
  } else {
    err = version.size() == 8 && version.substr(0, 5) == "HTTP/" ? parse_error::bad_version
                                                                 : parse_error::bad_request_line;
    return false;
  }
  target_parts parts;
  if (!parse_target(out.target, out.method, parts)) {
    err = parse_error::bad_target;
    return false;
  }
  out.path = parts.path;
  authority = parts.authority;
  return true;
}

// Request framing, RFC 9112 §6.1-6.3, strictest reading for an intermediary.
bool request_framing(const framing_state& fs, request_head& out, parse_error& err) {
  if (fs.saw_te) {
    if (out.version_minor == 0) {
      err = parse_error::chunked_on_http10;
      return false;
    }
    if (fs.saw_cl) {
      err = parse_error::content_length_and_transfer_encoding;
      return false;
    }
    if (fs.te_bad || !fs.te_chunked_last) {
      err = parse_error::bad_transfer_encoding;
      return false;
    }
    out.body = body_kind::chunked;
  } else if (fs.saw_cl || fs.cl_bad) {
    if (fs.cl_bad) {
      err = parse_error::bad_content_length;
      return false;
    }
    if (fs.cl_conflict) {
      err = parse_error::conflicting_content_length;
      return false;
    }
    out.content_length = fs.cl;
    out.body = fs.cl > 0 ? body_kind::content_length : body_kind::none;
  }
  return true;
}
}  // namespace

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (lower_c(static_cast<unsigned char>(a[i])) != lower_c(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s)
    if (!tchar[c]) return false;
  return true;
}

std::string_view describe(parse_error e) {
  switch (e) {
    case parse_error::none:
      return "no error";
    case parse_error::head_too_large:
      return "request head exceeds the size limit";
    case parse_error::too_many_headers:
      return "too many header fields";
    case parse_error::bad_line_ending:
      return "line not terminated by CRLF";
    case parse_error::bad_request_line:
      return "malformed request line";
    case parse_error::bad_method:
      return "malformed method";
    case parse_error::bad_target:
      return "malformed request target";
    case parse_error::bad_version:
      return "unsupported HTTP version";
    case parse_error::bad_header_name:
      return "malformed header field name";
    case parse_error::bad_header_value:
      return "invalid character in a header field value";
    case parse_error::obs_fold:
      return "obsolete line folding is not allowed";
    case parse_error::missing_host:
      return "missing Host header";
    case parse_error::duplicate_host:
      return "more than one Host header";
    case parse_error::bad_content_length:
      return "invalid Content-Length";
    case parse_error::conflicting_content_length:
      return "conflicting Content-Length values";
    case parse_error::content_length_and_transfer_encoding:
      return "both Content-Length and Transfer-Encoding";
    case parse_error::bad_transfer_encoding:
      return "unsupported Transfer-Encoding";
    case parse_error::chunked_on_http10:
      return "Transfer-Encoding in an HTTP/1.0 message";
    case parse_error::body_too_large:
      return "request body exceeds the size limit";
    case parse_error::bad_status_line:
      return "malformed status line";
  }
  return "malformed message";
}

bool message_head::is_hop_by_hop(std::string_view n) const {
  switch (n.size()) {
    case 2:
      if (iequals(n, "te")) return true;
      break;
    case 7:
      if (iequals(n, "trailer") || iequals(n, "upgrade")) return true;
      break;
    case 10:
      if (iequals(n, "connection") || iequals(n, "keep-alive")) return true;
      break;
    case 17:
      if (iequals(n, "transfer-encoding")) return true;
      break;
    default:
      break;
  }
  if (n.size() > 6 && iequals(n.substr(0, 6), "proxy-")) return true;
  for (std::size_t i = 0; i < connection_token_count; ++i)
    if (iequals(n, connection_tokens[i])) return true;
  return false;
}

std::string_view message_head::find(std::string_view name) const {
  for (const auto& h : fields())
    if (iequals(h.name, name)) return h.value;
  return {};
}

std::size_t message_head::count(std::string_view name) const {
  std::size_t n = 0;
  for (const auto& h : fields()) n += iequals(h.name, name) ? 1 : 0;
  return n;
}

std::size_t find_head_end(std::string_view buf, std::size_t from) {
  if (buf.size() < 4) return 0;
  // Line by line with memchr (vectorised): cheaper than memmem for a 4-byte needle over the
  // dozen short lines of a head. A match is "\r\n\r\n" starting at or after from - 3.
  const char* base = buf.data();
  const char* end = base + buf.size();
  const char* p = base + std::max<std::size_t>(from, 3);
  while (p < end) {
    p = static_cast<const char*>(std::memchr(p, '\n', static_cast<std::size_t>(end - p)));
    if (!p) return 0;
    if (p[-1] == '\r' && p[-2] == '\n' && p[-3] == '\r')
      return static_cast<std::size_t>(p - base) + 1;
    ++p;
  }
  return 0;
}

parse_status parse_request(std::string_view buf, const head_limits& limits,
                           std::span<header> storage, request_head& out, parse_error& err) {
  err = parse_error::none;
  out = request_head{};
  std::size_t pos = 0;
  // RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request line.
  for (int i = 0; i < 4 && pos + 1 < buf.size() && buf[pos] == '\r' && buf[pos + 1] == '\n'; ++i)
    pos += 2;
  std::string_view line;
  if (!next_line(buf, pos, line)) return no_start_line(buf, limits, err);
  std::string_view authority;
  if (!parse_request_line(line, out, authority, err)) return parse_status::error;

  framing_state fs;
  auto st = parse_fields(buf, pos, limits, storage, out, fs, err);
  if (st != parse_status::complete) return st;
  if (out.head_size > limits.max_head_bytes) {
    err = parse_error::head_too_large;
    return parse_status::error;
  }

  std::size_t hosts = 0;
  for (const auto& h : out.fields()) {
    if (h.name.size() == 4 && iequals(h.name, "host")) {
      ++hosts;
      out.host = h.value;
    } else if (h.name.size() == 6 && iequals(h.name, "expect")) {
      if (iequals(h.value, "100-continue")) out.expect_continue = true;
    }
  }
  if (hosts > 1) {
    err = parse_error::duplicate_host;
    return parse_status::error;
  }
  if (hosts == 0 && out.version_minor == 1) {
    err = parse_error::missing_host;
    return parse_status::error;
  }
  if (!authority.empty()) out.host = authority;

  if (!request_framing(fs, out, err)) return parse_status::error;
  out.keep_alive = out.version_minor == 1 ? !fs.saw_close : (fs.saw_keep_alive && !fs.saw_close);
  return parse_status::complete;
}

parse_status parse_response(std::string_view buf, const head_limits& limits,
                            std::span<header> storage, std::string_view request_method,
                            response_head& out, parse_error& err) {
  err = parse_error::none;
  out = response_head{};
  std::size_t pos = 0;
  std::string_view line;
  if (!next_line(buf, pos, line)) return no_start_line(buf, limits, err);
  // HTTP/1.x SP 3DIGIT SP reason (the reason may be empty; some servers omit its SP).
  if (line.size() < 12 || line.substr(0, 7) != "HTTP/1." || (line[7] != '0' && line[7] != '1') ||
      line[8] != ' ' || (line.size() > 12 && line[12] != ' ')) {
    err = parse_error::bad_status_line;
    return parse_status::error;
  }
  out.version_minor = line[7] - '0';
  int status = 0;
  for (int i = 9; i < 12; ++i) {
    if (line[i] < '0' || line[i] > '9') {
      err = parse_error::bad_status_line;
      return parse_status::error;
    }
    status = status * 10 + (line[i] - '0');
  }
  if (status < 100) {
    err = parse_error::bad_status_line;
    return parse_status::error;
  }
  out.status = status;
  out.reason = line.size() > 13 ? line.substr(13) : std::string_view{};

  framing_state fs;
  auto st = parse_fields(buf, pos, limits, storage, out, fs, err);
  if (st != parse_status::complete) return st;
  if (out.head_size > limits.max_head_bytes) {
    err = parse_error::head_too_large;
    return parse_status::error;
  }
  out.keep_alive = out.version_minor == 1 ? !fs.saw_close : (fs.saw_keep_alive && !fs.saw_close);

  // RFC 9112 §6.3, in order.
  if (request_method == "HEAD" || status < 200 || status == 204 || status == 304 ||
      (request_method == "CONNECT" && status < 300)) {
    out.body = body_kind::none;
    return parse_status::complete;
  }
  if (fs.saw_te) {
    if (fs.te_chunked_last && !fs.te_bad) {
      out.body = body_kind::chunked;
    } else {
      out.body = body_kind::until_close;  // unknown coding: read until close, never reuse
      out.keep_alive = false;
    }
    // CL beside TE: TE wins, but the sender is suspect; do not reuse the connection.
    if (fs.saw_cl || fs.cl_bad) out.keep_alive = false;
    return parse_status::complete;
  }
  if (fs.cl_bad || fs.cl_conflict) {
    err = fs.cl_bad ? parse_error::bad_content_length : parse_error::conflicting_content_length;
    return parse_status::error;
  }
  if (fs.saw_cl) {
    out.content_length = fs.cl;
    out.body = body_kind::content_length;
    return parse_status::complete;
  }
  out.body = body_kind::until_close;
  out.keep_alive = false;
  return parse_status::complete;
}

}  // namespace meridian::http
