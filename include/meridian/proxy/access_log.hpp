// JSON access log lines on stdout, buffered per worker and flushed in batches. Owned by one
// worker thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace meridian::proxy {

// Why a request did not end as a plain proxied response (Envoy's response flags, a fixed set).
enum response_flag : std::uint16_t {
  flag_no_route = 1 << 0,          // NR: no route matched
  flag_connect_failure = 1 << 1,   // UF: no upstream connection could be made
  flag_overflow = 1 << 2,          // UO: shed by admission, or every connection cap reached
  flag_upstream_timeout = 1 << 3,  // UT: no response in time (first byte, or the total deadline)
  flag_upstream_reset = 1 << 4,    // UC: the upstream closed or answered garbage before a response
  flag_stream_broken = 1 << 5,     // SI: the response broke off after the client got bytes
  flag_client_gone = 1 << 6,       // DC: the client left before the response was done
  flag_bad_request = 1 << 7,       // DPE: the client's request was malformed, too large or late
  flag_retried = 1 << 8,           // RT: more than one upstream try (retries, hedges)
  flag_hedge_won = 1 << 9,         // HW: a hedge answered before the first try
  flag_resumed = 1 << 10,          // SR: a cut stream was continued on another endpoint
};
inline constexpr std::size_t response_flag_count = 11;

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
  double upstream_s = -1;       // request sent -> response done; -1 if none
  double ttfb_s = -1;           // request start -> response head sent to client; -1 if none
  std::string_view error;       // why the gateway answered or aborted, if it did
  std::string_view client;      // client IP address
  std::string_view protocol;    // "http/1.1", "http/1.0", "h2"
  std::string_view tls;         // TLS version over TLS, else empty
  std::string_view tls_client;  // the verified client certificate's subject (mutual TLS)
  std::string_view user_agent;  // empty: none sent, or not known
  std::string_view host;
  std::string_view cluster;
  std::string_view tenant;          // the tenant its key named (tenants configured)
  std::string_view model;           // the request's JSON "model", where the gateway read it
  std::string_view grpc_status;     // a gRPC call's grpc-status; empty otherwise
  std::int64_t prompt_tokens = -1;  // from the response's usage; -1: not reported
  std::int64_t completion_tokens = -1;
  int attempts = 0;         // upstream tries, retries and hedges included
  std::uint16_t flags = 0;  // response_flag bits
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
