// Incremental, strict decoder for chunked transfer coding (RFC 9112 §7.1), and the encoder the
// gateway uses to re-frame. One instance per message, used by one worker thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace meridian::http {

class chunked_decoder {
 public:
  struct step {
    std::size_t consumed = 0;  // bytes of input used by this step
    std::string_view data;     // payload bytes found (a view into the input), may be empty
  };

  // Decodes from `in` until one payload span is found, input runs out, the message ends or an
  // error occurs. Call again with the rest of the input.
  step decode(std::string_view in);

  bool done() const { return state_ == state::done; }
  bool failed() const { return state_ == state::error; }
  std::string_view error() const { return error_; }
  std::uint64_t payload_bytes() const { return total_; }
  // Payload bytes the current chunk still announces (0 between chunks).
  std::uint64_t announced() const { return state_ == state::data ? remaining_ : 0; }
  void reset() { *this = chunked_decoder{}; }

 private:
  enum class state {
    size,
    size_ws,  // BWS after the size, before ';' or CR
    ext,      // inside chunk extensions
    ext_quoted,
    ext_quoted_escape,
    size_lf,
    data,
    data_cr,
    data_lf,
    trailer_line_start,
    trailer_line,
    trailer_lf,
    final_lf,
    done,
    error,
  };
  void fail(const char* why) {
    state_ = state::error;
    error_ = why;
  }
  bool check_trailer_line();
  bool step_size_line(char c);
  bool step_trailer(char c);

  state state_ = state::size;
  std::uint64_t remaining_ = 0;
  std::uint64_t total_ = 0;
  unsigned size_digits_ = 0;
  std::size_t ext_bytes_ = 0;
  std::size_t trailer_bytes_ = 0;
  std::string trailer_line_;  // only trailers are copied, and they are capped
  const char* error_ = "";
};

// Appends a chunk header for `n` payload bytes ("1a\r\n").
void append_chunk_header(std::string& out, std::size_t n);
inline constexpr std::string_view chunk_crlf = "\r\n";
inline constexpr std::string_view last_chunk = "0\r\n\r\n";

}  // namespace meridian::http
