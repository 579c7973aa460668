#include "meridian/http/chunked.hpp"

#include <algorithm>

#include "meridian/http/parser.hpp"

namespace meridian::http {
namespace {
constexpr std::size_t max_ext_bytes = 4096;       // per chunk line
constexpr std::size_t max_trailer_bytes = 16384;  // whole trailer section

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool is_tchar(char c) {
  return is_token(std::string_view(&c, 1));
}
}  // namespace

void append_chunk_header(std::string& out, std::size_t n) {
  char buf[24];
  int i = sizeof buf;
  buf[--i] = '\n';
  buf[--i] = '\r';
  do {
    buf[--i] = "0123456789abcdef"[n & 15];
    n >>= 4;
  } while (n);
  out.append(buf + i, sizeof buf - static_cast<std::size_t>(i));
}

// Trailer fields are checked like header fields; framing and routing fields are refused there
// because a lenient peer could apply them after the fact (RFC 9110 §6.5.1).
bool chunked_decoder::check_trailer_line() {
  std::string_view line(trailer_line_);
  if (line.front() == ' ' || line.front() == '\t') return false;
  auto colon = line.find(':');
  if (colon == std::string_view::npos || !is_token(line.substr(0, colon))) return false;
  auto name = line.substr(0, colon);
  for (unsigned char c : line.substr(colon + 1))
    if (!(c == '\t' || (c >= 0x20 && c != 0x7f))) return false;
  for (std::string_view forbidden : {"content-length", "transfer-encoding", "host", "trailer",
                                     "content-type", "content-encoding", "connection"})
    if (iequals(name, forbidden)) return false;
  return true;
}

// One character of a chunk-size line (size, BWS, extensions, CRLF); true when it was used.
bool chunked_decoder::step_size_line(char c) {
  auto to = [this](state next) {
    state_ = next;
    return true;
  };
  auto bad = [this](const char* why) {
    fail(why);
    return false;
  };
  switch (state_) {
    case state::size: {
      int h = hex_value(c);
      if (h >= 0) {
        if (++size_digits_ > 15) return bad("chunk size too large");
        remaining_ = remaining_ * 16 + static_cast<unsigned>(h);
        return true;
      }
      if (size_digits_ == 0) return bad("invalid chunk size");
      if (c == ' ' || c == '\t') return to(state::size_ws);
      if (c == ';') {
        ext_bytes_ = 0;
        return to(state::ext);
      }
      if (c == '\r') return to(state::size_lf);
      return bad("invalid chunk size");
    }
    case state::size_ws:
      if (c == ' ' || c == '\t') return true;
      if (c == ';') {
        ext_bytes_ = 0;
        return to(state::ext);
      }
      if (c == '\r') return to(state::size_lf);
      return bad("invalid chunk size");
    case state::ext:
      // chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] ), ext-val token or
      // quoted-string. We check the character classes; extensions are dropped on re-framing.
      if (++ext_bytes_ > max_ext_bytes) return bad("chunk extension too long");
      if (c == '\r') return to(state::size_lf);
      if (c == '"') return to(state::ext_quoted);
      if (!(is_tchar(c) || c == ';' || c == '=' || c == ' ' || c == '\t'))
        return bad("invalid chunk extension");
      return true;
    case state::ext_quoted:
      if (++ext_bytes_ > max_ext_bytes) return bad("chunk extension too long");
      if (c == '"') return to(state::ext);
      if (c == '\\') return to(state::ext_quoted_escape);
      if (static_cast<unsigned char>(c) < 0x20 && c != '\t') return bad("invalid chunk extension");
      return true;
    case state::ext_quoted_escape:
      if (static_cast<unsigned char>(c) < 0x20 && c != '\t') return bad("invalid chunk extension");
      return to(state::ext_quoted);
    case state::size_lf:
      if (c != '\n') return bad("chunk size line not terminated by CRLF");
      size_digits_ = 0;
      return to(remaining_ == 0 ? state::trailer_line_start : state::data);
    default:
      return false;
  }
}

// One character of the trailer section and the final CRLF; true when it was used (a trailer
// line's first character is looked at twice: once to see it is not the final CRLF).
bool chunked_decoder::step_trailer(char c) {
  switch (state_) {
    case state::trailer_line_start:
      if (c == '\r') {
        state_ = state::final_lf;
        return true;
      }
      trailer_line_.clear();
      state_ = state::trailer_line;
      return false;
    case state::trailer_line:
      if (++trailer_bytes_ > max_trailer_bytes) {
        fail("trailer section too large");
        return false;
      }
      if (c == '\n') {
        fail("trailer line not terminated by CRLF");
        return false;
      }
      if (c == '\r')
        state_ = state::trailer_lf;
      else
        trailer_line_.push_back(c);
      return true;
    case state::trailer_lf:
      if (c != '\n' || trailer_line_.empty() || !check_trailer_line()) {
        fail("invalid trailer field");
        return false;
      }
      state_ = state::trailer_line_start;
      return true;
    case state::final_lf:
      if (c != '\n') {
        fail("chunked body not terminated by CRLF");
        return false;
      }
      state_ = state::done;
      return true;
    default:
      return false;
  }
}

chunked_decoder::step chunked_decoder::decode(std::string_view in) {
  step out;
  std::size_t i = 0;
  while (i < in.size() && state_ != state::done && state_ != state::error) {
    char c = in[i];
    switch (state_) {
      case state::data: {
        std::size_t n =
            static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, in.size() - i));
        out.data = in.substr(i, n);
        remaining_ -= n;
        total_ += n;
        i += n;
        if (remaining_ == 0) state_ = state::data_cr;
        out.consumed = i;
        return out;  // one payload span per step keeps the views simple for the caller
      }
      case state::data_cr:
        if (c != '\r') {
          fail("chunk data not followed by CRLF");
          break;
        }
        state_ = state::data_lf;
        ++i;
        break;
      case state::data_lf:
        if (c != '\n') {
          fail("chunk data not followed by CRLF");
          break;
        }
        state_ = state::size;
        ++i;
        break;
      case state::trailer_line_start:
      case state::trailer_line:
      case state::trailer_lf:
      case state::final_lf:
        if (step_trailer(c)) ++i;
        break;
      default:
        if (step_size_line(c)) ++i;
        break;
    }
  }
  out.consumed = i;
  return out;
}

}  // namespace meridian::http
