// JSON access log lines on stdout, buffered per worker and flushed in batches. Owned by one
// worker thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace meridian::proxy {

struct access_record {
  std::string_view request_id;
  std::string_view method;
  std::string_view path;
  std::string_view route;
  std::string_view upstream;  // endpoint address, empty if none was tried
  int status = 0;             // 0: no response was sent
  std::uint64_t bytes_in = 0;
  std::uint64_t bytes_out = 0;
  double duration_s = 0;
  double upstream_s = -1;  // request sent -> response done; -1 if none
  double ttfb_s = -1;      // request start -> response head sent to client; -1 if none
  std::string_view error;  // why the gateway answered or aborted, if it did
};

class access_log {
 public:
  explicit access_log(bool enabled, int fd = 1) : enabled_(enabled), fd_(fd) {}
  ~access_log() { flush(); }
  bool enabled() const { return enabled_; }
  void record(const access_record& r);
  void flush();

 private:
  bool enabled_;
  int fd_;
  std::string buf_;
  std::int64_t cached_second_ = -1;
  char cached_time_[24] = {};
};

}  // namespace meridian::proxy
