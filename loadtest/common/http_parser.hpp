// Minimal HTTP/1.1 head parsers and body decoder for the harness's hand-rolled client and servers;
// views point into the caller's read buffer, so one parser object per connection, no allocation.
#pragma once
#include <cstdint>
#include <string_view>

namespace meridian::loadtest {

struct header_field {
  std::string_view name, value;
};

bool iequals(std::string_view a, std::string_view b) noexcept;

struct request_head {
  static constexpr int max_headers = 64;
  std::string_view method, target;
  int minor = 1;
  std::int64_t content_length = -1;
  bool chunked = false;
  bool keep_alive = true;
  header_field headers[max_headers];
  int header_count = 0;
  std::string_view find(std::string_view name) const noexcept;
};

struct response_head {
  int status = 0;
  int minor = 1;
  std::int64_t content_length = -1;
  bool chunked = false;
  bool keep_alive = true;
  std::string_view content_type;
  std::string_view backend;  // x-mock-backend
};

// Return the head length (bytes incl. the blank line), 0 if incomplete, -1 if malformed.
long parse_request_head(std::string_view buf, request_head& out) noexcept;
// `backend_header`: the header whose value names the backend that answered (out.backend).
long parse_response_head(std::string_view buf, response_head& out,
                         std::string_view backend_header = "x-mock-backend") noexcept;

// Decodes a Content-Length, chunked or read-until-close body incrementally.
class body_decoder {
 public:
  enum class mode { length, chunked, until_close };
  void reset_length(std::uint64_t n) noexcept {
    mode_ = mode::length;
    remaining_ = n;
    state_ = n == 0 ? st::done : st::data;
  }
  void reset_chunked() noexcept {
    mode_ = mode::chunked;
    state_ = st::size;
    remaining_ = 0;
    size_digits_ = 0;
  }
  void reset_until_close() noexcept {
    mode_ = mode::until_close;
    state_ = st::data;
  }
  bool done() const noexcept { return state_ == st::done; }
  bool failed() const noexcept { return state_ == st::error; }
  void finish_on_close() noexcept {
    if (mode_ == mode::until_close) state_ = st::done;
  }

  // Consumes bytes from in, calling on_data(std::string_view) with decoded body bytes; stops at the
  // end of the body. Returns the number of bytes consumed.
  template <class F>
  std::size_t feed(std::string_view in, F&& on_data) {
    std::size_t i = 0;
    while (i < in.size() && state_ != st::done && state_ != st::error) {
      if (state_ == st::data) {
        if (mode_ == mode::until_close) {
          on_data(in.substr(i));
          return in.size();
        }
        std::size_t n = in.size() - i;
        if (n > remaining_) n = static_cast<std::size_t>(remaining_);
        on_data(in.substr(i, n));
        i += n;
        remaining_ -= n;
        if (remaining_ == 0) state_ = mode_ == mode::length ? st::done : st::data_cr;
        continue;
      }
      step(in[i++]);
    }
    return i;
  }

 private:
  enum class st {
    size,
    size_ext,
    size_lf,
    data,
    data_cr,
    data_lf,
    trailer_start,
    trailer_line,
    trailer_lf,
    done,
    error
  };
  void step(char c) noexcept;
  mode mode_ = mode::length;
  st state_ = st::done;
  std::uint64_t remaining_ = 0;
  int size_digits_ = 0;
};

}  // namespace meridian::loadtest
