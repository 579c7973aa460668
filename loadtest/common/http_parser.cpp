#include "common/http_parser.hpp"

#include <charconv>
#include <cstring>

namespace meridian::loadtest {

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x + 32);
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y + 32);
    if (x != y) return false;
  }
  return true;
}

namespace {
bool icontains_token(std::string_view v, std::string_view token) noexcept {
  while (!v.empty()) {
    auto c = v.find(',');
    std::string_view t = v.substr(0, c);
    while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
    while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
    if (iequals(t, token)) return true;
    if (c == std::string_view::npos) break;
    v.remove_prefix(c + 1);
  }
  return false;
}

// Walks header lines after the start line; calls f(name, value) for each; returns head length or
// 0/-1.
template <class F>
long walk_headers(std::string_view buf, std::size_t pos, F&& f) noexcept {
  while (true) {
    auto eol = buf.find('\n', pos);
    if (eol == std::string_view::npos) return buf.size() > 64 * 1024 ? -1 : 0;
    std::string_view line = buf.substr(pos, eol - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    pos = eol + 1;
    if (line.empty()) return static_cast<long>(pos);
    auto colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return -1;
    std::string_view name = line.substr(0, colon);
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
      value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    if (!f(name, value)) return -1;
  }
}

bool parse_length(std::string_view v, std::int64_t& out) noexcept {
  std::int64_t n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc{} || p != v.data() + v.size() || n < 0) return false;
  out = n;
  return true;
}
}  // namespace

std::string_view request_head::find(std::string_view name) const noexcept {
  for (int i = 0; i < header_count; ++i)
    if (iequals(headers[i].name, name)) return headers[i].value;
  return {};
}

long parse_request_head(std::string_view buf, request_head& out) noexcept {
  // Fast reject before scanning headers: nothing to do until the blank line has arrived.
  if (buf.find("\r\n\r\n") == std::string_view::npos && buf.find("\n\n") == std::string_view::npos)
    return buf.size() > 64 * 1024 ? -1 : 0;
  auto eol = buf.find('\n');
  std::string_view line = buf.substr(0, eol);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  auto sp1 = line.find(' ');
  auto sp2 = line.rfind(' ');
  if (sp1 == std::string_view::npos || sp2 == sp1) return -1;
  out.method = line.substr(0, sp1);
  out.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view ver = line.substr(sp2 + 1);
  if (ver == "HTTP/1.1")
    out.minor = 1;
  else if (ver == "HTTP/1.0")
    out.minor = 0;
  else
    return -1;
  out.content_length = -1;
  out.chunked = false;
  out.keep_alive = out.minor == 1;
  out.header_count = 0;
  return walk_headers(buf, eol + 1, [&](std::string_view n, std::string_view v) {
    if (out.header_count < request_head::max_headers) out.headers[out.header_count++] = {n, v};
    if (iequals(n, "content-length")) {
      std::int64_t len;
      if (!parse_length(v, len) || (out.content_length >= 0 && out.content_length != len))
        return false;
      out.content_length = len;
    } else if (iequals(n, "transfer-encoding")) {
      out.chunked = icontains_token(v, "chunked");
    } else if (iequals(n, "connection")) {
      if (icontains_token(v, "close")) out.keep_alive = false;
      if (icontains_token(v, "keep-alive")) out.keep_alive = true;
    }
    return true;
  });
}

long parse_response_head(std::string_view buf, response_head& out,
                         std::string_view backend_header) noexcept {
  auto eol = buf.find('\n');
  if (eol == std::string_view::npos) return buf.size() > 64 * 1024 ? -1 : 0;
  std::string_view line = buf.substr(0, eol);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.size() < 12 || !line.starts_with("HTTP/1.")) return -1;
  out.minor = line[7] == '1' ? 1 : 0;
  int status = 0;
  auto [p, ec] = std::from_chars(line.data() + 9, line.data() + 12, status);
  if (ec != std::errc{} || p != line.data() + 12) return -1;
  out.status = status;
  out.content_length = -1;
  out.chunked = false;
  out.keep_alive = out.minor == 1;
  out.content_type = {};
  out.backend = {};
  return walk_headers(buf, eol + 1, [&](std::string_view n, std::string_view v) {
    if (n.size() == backend_header.size() && iequals(n, backend_header)) out.backend = v;
    switch (n.size()) {
      case 14:
        if (iequals(n, "content-length")) return parse_length(v, out.content_length);
        break;
      case 17:
        if (iequals(n, "transfer-encoding")) out.chunked = icontains_token(v, "chunked");
        break;
      case 10:
        if (iequals(n, "connection")) {
          if (icontains_token(v, "close"))
            out.keep_alive = false;
          else if (icontains_token(v, "keep-alive"))
            out.keep_alive = true;
        }
        break;
      case 12:
        if (iequals(n, "content-type")) out.content_type = v;
        break;
      default:
        break;
    }
    return true;
  });
}

void body_decoder::step(char c) noexcept {
  auto hex = [](char ch) -> int {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
  };
  switch (state_) {
    case st::size: {
      int h = hex(c);
      if (h >= 0) {
        if (++size_digits_ > 15) {
          state_ = st::error;
          return;
        }
        remaining_ = remaining_ * 16 + static_cast<unsigned>(h);
      } else if (size_digits_ == 0) {
        state_ = st::error;
      } else if (c == '\r') {
        state_ = st::size_lf;
      } else if (c == '\n') {
        goto size_done;
      } else if (c == ';' || c == ' ' || c == '\t') {
        state_ = st::size_ext;
      } else {
        state_ = st::error;
      }
      return;
    }
    case st::size_ext:
      if (c == '\r')
        state_ = st::size_lf;
      else if (c == '\n')
        goto size_done;
      return;
    case st::size_lf:
      if (c != '\n') {
        state_ = st::error;
        return;
      }
      goto size_done;
    case st::data_cr:
      if (c == '\r')
        state_ = st::data_lf;
      else if (c == '\n')
        state_ = st::size, remaining_ = 0, size_digits_ = 0;
      else
        state_ = st::error;
      return;
    case st::data_lf:
      if (c == '\n')
        state_ = st::size, remaining_ = 0, size_digits_ = 0;
      else
        state_ = st::error;
      return;
    case st::trailer_start:
      if (c == '\r')
        state_ = st::trailer_lf;
      else if (c == '\n')
        state_ = st::done;
      else
        state_ = st::trailer_line;
      return;
    case st::trailer_line:
      if (c == '\n') state_ = st::trailer_start;
      return;
    case st::trailer_lf:
      state_ = c == '\n' ? st::done : st::error;
      return;
    default:
      return;
  }
size_done:
  size_digits_ = 0;
  state_ = remaining_ == 0 ? st::trailer_start : st::data;
}

}  // namespace meridian::loadtest
