#include "meridian/proxy/access_log.hpp"

#include <unistd.h>

#include <charconv>
#include <ctime>

#include "meridian/common/error.hpp"
#include "meridian/common/log.hpp"
#include "meridian/http/headers.hpp"

namespace meridian::proxy {
namespace {
void append_ms(std::string& out, double seconds) {
  char buf[32];
  auto res = std::to_chars(buf, buf + sizeof buf, seconds * 1000.0, std::chars_format::fixed, 3);
  out.append(buf, res.ptr);
}
void append_str(std::string& out, std::string_view key, std::string_view value) {
  out.append(",\"");
  out.append(key);
  out.append("\":\"");
  common::json_escape_append(out, value);
  out.push_back('"');
}
void append_count(std::string& out, std::string_view key, std::int64_t v) {
  out.append(",\"");
  out.append(key);
  out.append("\":");
  if (v < 0)
    out.append("null");
  else
    http::append_uint(out, static_cast<std::uint64_t>(v));
}
constexpr const char* flag_names[] = {"NR", "UF",  "UO", "UT", "UC", "SI",
                                      "DC", "DPE", "RT", "HW", "SR"};
static_assert(std::size(flag_names) == response_flag_count);
}  // namespace

void access_log::record(const access_record& r) {
  if (!enabled_) return;
  auto now = std::chrono::system_clock::now();
  auto ms_total =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  std::int64_t sec = ms_total / 1000;
  if (sec != cached_second_) {
    cached_second_ = sec;
    std::time_t t = static_cast<std::time_t>(sec);
    std::tm tm{};
    gmtime_r(&t, &tm);
    std::strftime(cached_time_, sizeof cached_time_, "%Y-%m-%dT%H:%M:%S", &tm);
  }
  int ms = static_cast<int>(ms_total % 1000);
  buf_.append("{\"time\":\"");
  buf_.append(cached_time_);
  buf_.push_back('.');
  buf_.push_back(static_cast<char>('0' + ms / 100));
  buf_.push_back(static_cast<char>('0' + ms / 10 % 10));
  buf_.push_back(static_cast<char>('0' + ms % 10));
  buf_.append("Z\"");
  append_str(buf_, "request_id", r.request_id);
  append_str(buf_, "method", r.method);
  append_str(buf_, "path", r.path);
  append_str(buf_, "route", r.route);
  buf_.append(",\"status\":");
  http::append_uint(buf_, static_cast<std::uint64_t>(r.status));
  buf_.append(",\"bytes_in\":");
  http::append_uint(buf_, r.bytes_in);
  buf_.append(",\"bytes_out\":");
  http::append_uint(buf_, r.bytes_out);
  buf_.append(",\"duration_ms\":");
  append_ms(buf_, r.duration_s);
  append_str(buf_, "upstream", r.upstream);
  buf_.append(",\"upstream_ms\":");
  if (r.upstream_s >= 0)
    append_ms(buf_, r.upstream_s);
  else
    buf_.append("null");
  buf_.append(",\"ttfb_ms\":");
  if (r.ttfb_s >= 0)
    append_ms(buf_, r.ttfb_s);
  else
    buf_.append("null");
  append_str(buf_, "client", r.client);
  append_str(buf_, "protocol", r.protocol);
  if (!r.tls.empty()) append_str(buf_, "tls", r.tls);
  if (!r.tls_client.empty()) append_str(buf_, "tls_client", r.tls_client);
  append_str(buf_, "host", r.host);
  append_str(buf_, "user_agent", r.user_agent);
  append_str(buf_, "cluster", r.cluster);
  if (!r.tenant.empty()) append_str(buf_, "tenant", r.tenant);
  if (!r.model.empty()) append_str(buf_, "model", r.model);
  if (!r.grpc_status.empty()) append_str(buf_, "grpc_status", r.grpc_status);
  append_count(buf_, "prompt_tokens", r.prompt_tokens);
  append_count(buf_, "completion_tokens", r.completion_tokens);
  append_count(buf_, "attempts", r.attempts);
  buf_.append(",\"flags\":\"");
  bool any = false;
  for (std::size_t i = 0; i < response_flag_count; ++i) {
    if (!(r.flags & (1u << i))) continue;
    if (any) buf_.push_back(',');
    buf_.append(flag_names[i]);
    any = true;
  }
  if (!any) buf_.push_back('-');
  buf_.push_back('"');
  if (!r.error.empty()) append_str(buf_, "error", r.error);
  buf_.append("}\n");
  if (buf_.size() >= 32 * 1024) flush();
}

void access_log::flush() {
  common::write_all(fd_, buf_);
  buf_.clear();
}

}  // namespace meridian::proxy
