#include "proxy/object_resume.hpp"

#include <charconv>

#include "meridian/common/log.hpp"

namespace meridian::proxy {

namespace {
// Headers the continuation replaces: the client's range and preconditions were settled by the
// first response; the continuation's only condition is the version it must match.
bool replaced(std::string_view name) {
  for (std::string_view n : {"range", "if-range", "if-match", "if-none-match", "if-modified-since",
                             "if-unmodified-since"})
    if (http::iequals(name, n)) return true;
  return false;
}
}  // namespace

bool parse_uint(std::string_view s, std::uint64_t& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return !s.empty() && ec == std::errc{} && p == s.data() + s.size();
}

bool parse_content_range(std::string_view v, std::uint64_t& first, std::uint64_t& last,
                         std::uint64_t* total_out) {
  if (!v.starts_with("bytes ")) return false;
  v.remove_prefix(6);
  auto dash = v.find('-'), slash = v.find('/');
  if (dash == std::string_view::npos || slash == std::string_view::npos || slash < dash)
    return false;
  std::uint64_t total = 0;
  auto t = v.substr(slash + 1);
  if (t != "*" && !parse_uint(t, total)) return false;
  if (!parse_uint(v.substr(0, dash), first) ||
      !parse_uint(v.substr(dash + 1, slash - dash - 1), last))
    return false;
  if (total_out) *total_out = total;
  return first <= last && (t == "*" || last < total);
}

bool strong_etag(std::string_view etag) {
  return etag.size() >= 2 && etag.front() == '"' && etag.back() == '"';
}

bool answers_range(const http::response_head& r, std::uint64_t first, std::uint64_t last,
                   std::string_view etag, std::string& why) {
  auto got = r.find("etag");
  if (r.status != 206) {
    why = r.status == 200 ? common::cat("it holds another version (ETag ",
                                        got.empty() ? "none" : got, ", expected ", etag, ")")
                          : common::cat("it answered ", r.status);
    return false;
  }
  std::uint64_t a = 0, b = 0;
  if (!parse_content_range(r.find("content-range"), a, b) || a != first || b != last ||
      r.body != http::body_kind::content_length || r.content_length != last - first + 1) {
    why =
        common::cat("its 206 covers '", r.find("content-range"), "', not bytes ", first, '-', last);
    return false;
  }
  if (got != etag) {
    why = common::cat("it holds another version (ETag ", got, ", expected ", etag, ")");
    return false;
  }
  return true;
}

bool object_resume::begin(const http::response_head& r) {
  reset();
  if (r.body != http::body_kind::content_length || r.content_length == 0) return false;
  auto etag = r.find("etag");
  if (!strong_etag(etag)) return false;
  if (r.status == 200) {
    first_ = 0;
  } else if (r.status == 206) {
    std::uint64_t last = 0;
    if (!parse_content_range(r.find("content-range"), first_, last)) return false;
    if (last - first_ + 1 != r.content_length) return false;
  } else {
    return false;
  }
  last_ = first_ + r.content_length - 1;
  etag_.assign(etag);
  active_ = true;
  return true;
}

std::string object_resume::continuation_head(std::string_view head) const {
  return ranged_head(head, next(), last_, etag_);
}

std::string ranged_head(std::string_view head, std::uint64_t first, std::uint64_t last,
                        std::string_view if_range) {
  std::string out;
  out.reserve(head.size() + 64 + if_range.size());
  // The request line, then header lines up to the blank line that ends the head.
  auto eol = head.find("\r\n");
  out.append(head.substr(0, eol + 2));
  std::size_t pos = eol + 2;
  while (pos < head.size()) {
    auto end = head.find("\r\n", pos);
    if (end == std::string_view::npos || end == pos) break;
    auto line = head.substr(pos, end + 2 - pos);
    auto colon = line.find(':');
    if (colon == std::string_view::npos || !replaced(line.substr(0, colon))) out.append(line);
    pos = end + 2;
  }
  out.append(common::cat("range: bytes=", first, '-', last, "\r\n"));
  if (!if_range.empty()) out.append(common::cat("if-range: ", if_range, "\r\n"));
  out.append("\r\n");
  return out;
}

bool object_resume::continues(const http::response_head& r, std::string& why) const {
  return answers_range(r, next(), last_, etag_, why);
}

}  // namespace meridian::proxy
