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

chunked_decoder::step chunked_decoder::decode(std::string_view in) {
  step out;
  std::size_t i = 0;
  while (i < in.size() && state_ != state::done && state_ != state::error) {
    char c = in[i];
    switch (state_) {
      case state::size: {
        int h = hex_value(c);
        if (h >= 0) {
          if (++size_digits_ > 15) {
            fail("chunk size too large");
            break;
          }
          remaining_ = remaining_ * 16 + static_cast<unsigned>(h);
          ++i;
        } else if (size_digits_ == 0) {
          fail("invalid chunk size");
        } else if (c == ' ' || c == '\t') {
          state_ = state::size_ws;
          ++i;
        } else if (c == ';') {
          state_ = state::ext;
          ext_bytes_ = 0;
          ++i;
        } else if (c == '\r') {
          state_ = state::size_lf;
          ++i;
        } else {
          fail("invalid chunk size");
        }
        break;
      }
      case state::size_ws:
        if (c == ' ' || c == '\t')
          ++i;
        else if (c == ';') {
          state_ = state::ext;
          ext_bytes_ = 0;
          ++i;
        } else if (c == '\r') {
          state_ = state::size_lf;
          ++i;
        } else
          fail("invalid chunk size");
        break;
      case state::ext:
        // chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] ), ext-val token or
        // quoted-string. We check the character classes; extensions are dropped on re-framing.
        if (++ext_bytes_ > max_ext_bytes) {
          fail("chunk extension too long");
          break;
        }
        if (c == '\r')
          state_ = state::size_lf;
        else if (c == '"')
          state_ = state::ext_quoted;
        else if (!(is_tchar(c) || c == ';' || c == '=' || c == ' ' || c == '\t'))
          fail("invalid chunk extension");
        if (state_ != state::error) ++i;
        break;
      case state::ext_quoted:
        if (++ext_bytes_ > max_ext_bytes) {
          fail("chunk extension too long");
          break;
        }
        if (c == '"')
          state_ = state::ext;
        else if (c == '\\')
          state_ = state::ext_quoted_escape;
        else if (static_cast<unsigned char>(c) < 0x20 && c != '\t')
          fail("invalid chunk extension");
        if (state_ != state::error) ++i;
        break;
      case state::ext_quoted_escape:
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t') {
          fail("invalid chunk extension");
          break;
        }
        state_ = state::ext_quoted;
        ++i;
        break;
      case state::size_lf:
        if (c != '\n') {
          fail("chunk size line not terminated by CRLF");
          break;
        }
        ++i;
        size_digits_ = 0;
        if (remaining_ == 0) {
          state_ = state::trailer_line_start;
        } else {
          state_ = state::data;
        }
        break;
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
        if (c == '\r') {
          state_ = state::final_lf;
          ++i;
          break;
        }
        trailer_line_.clear();
        state_ = state::trailer_line;
        break;
      case state::trailer_line:
        if (++trailer_bytes_ > max_trailer_bytes) {
          fail("trailer section too large");
          break;
        }
        if (c == '\r') {
          state_ = state::trailer_lf;
        } else if (c == '\n') {
          fail("trailer line not terminated by CRLF");
          break;
        } else {
          trailer_line_.push_back(c);
        }
        ++i;
        break;
      case state::trailer_lf:
        if (c != '\n' || trailer_line_.empty() || !check_trailer_line()) {
          fail("invalid trailer field");
          break;
        }
        state_ = state::trailer_line_start;
        ++i;
        break;
      case state::final_lf:
        if (c != '\n') {
          fail("chunked body not terminated by CRLF");
          break;
        }
        state_ = state::done;
        ++i;
        break;
      case state::done:
      case state::error:
        break;
    }
  }
  out.consumed = i;
  return out;
}

}  // namespace meridian::http
