// Diagnostic logging (not the access log): one line per event to stderr; any thread may log.
#pragma once

#include <charconv>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>

#include "meridian/common/clock.hpp"

namespace meridian::common {

enum class log_level { debug = 0, info = 1, warn = 2, error = 3 };

void set_log_level(log_level level);
log_level current_log_level();
bool parse_log_level(std::string_view text, log_level& out);

// Writes all of `data` to `fd`, retrying short writes; gives up on an error.
void write_all(int fd, std::string_view data);

// Writes one whole line with a single write(2) so lines from workers never interleave.
void log_line(log_level level, std::string_view component, std::string_view message);

namespace detail {
inline void append_one(std::string& out, std::string_view v) {
  out.append(v);
}
inline void append_one(std::string& out, const char* v) {
  out.append(v);
}
inline void append_one(std::string& out, const std::string& v) {
  out.append(v);
}
inline void append_one(std::string& out, char v) {
  out.push_back(v);
}
inline void append_one(std::string& out, bool v) {
  out.append(v ? "true" : "false");
}
template <class T>
requires(std::is_arithmetic_v<T> && !std::same_as<T, bool> &&
         !std::same_as<T, char>) void append_one(std::string& out, T v) {
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, res.ptr);
}
}  // namespace detail

// Concatenates strings and numbers; the project's stand-in for std::format (absent in GCC 12).
template <class... Args>
std::string cat(const Args&... args) {
  std::string out;
  (detail::append_one(out, args), ...);
  return out;
}

template <class... Args>
void log(log_level level, std::string_view component, const Args&... args) {
  if (level < current_log_level()) return;
  log_line(level, component, cat(args...));
}

// Keeps one repeated warning (an endpoint refusing every request, a full descriptor table) from
// flooding the log: at most `burst` lines per `window`, then silence until the window turns,
// when the next line says how many were left out. One per kind of event and owner thread.
class log_limiter {
 public:
  explicit log_limiter(int burst = 5, common::duration window = std::chrono::seconds(10))
      : burst_(burst), window_(window) {}
  // Whether to log this occurrence; if so, `suppressed` is how many were left out before it.
  bool allow(common::time_point now, std::uint64_t& suppressed) {
    if (now - start_ >= window_) {
      start_ = now;
      used_ = 0;
    }
    if (used_ >= burst_) {
      ++suppressed_;
      return false;
    }
    ++used_;
    suppressed = suppressed_;
    suppressed_ = 0;
    return true;
  }

 private:
  int burst_;
  common::duration window_;
  common::time_point start_{};
  int used_ = 0;
  std::uint64_t suppressed_ = 0;
};

// " (N similar lines left out)" when N > 0, else nothing.
inline std::string left_out(std::uint64_t n) {
  return n == 0 ? std::string() : cat(" (", n, " similar lines left out)");
}

}  // namespace meridian::common
