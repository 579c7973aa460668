// An HTTP/2 request stream's response half: the head (names lower-cased, connection-specific
// fields dropped), DATA queued for nghttp2 to frame under the client's window, trailers, and
// the gateway's own replies (a gRPC request's as a gRPC status). The request half is in
// h2_stream.cpp.
#include <charconv>
#include <cstring>

#include "http/h2.hpp"
#include "meridian/common/log.hpp"
#include "meridian/http/headers.hpp"

namespace meridian::http::h2 {

using common::error_kind;
using metrics::h2_reason;

// ---- the response -----------------------------------------------------------------------------

void stream::add_response_field(std::string_view name, std::string_view value) {
  std::uint32_t at = static_cast<std::uint32_t>(hstore_.size());
  for (char ch : name) hstore_.push_back(ch >= 'A' && ch <= 'Z' ? static_cast<char>(ch + 32) : ch);
  hspans_.emplace_back(at, static_cast<std::uint32_t>(name.size()));
  hspans_.emplace_back(static_cast<std::uint32_t>(hstore_.size()),
                       static_cast<std::uint32_t>(value.size()));
  hstore_.append(value);
}

void stream::submit(bool with_body) {
  submitted_ = true;
  if (h2_closed_) return;
  nva_.clear();
  auto* base = reinterpret_cast<std::uint8_t*>(hstore_.data());
  for (std::size_t i = 0; i + 1 < hspans_.size(); i += 2)
    nva_.push_back({base + hspans_[i].first, base + hspans_[i + 1].first, hspans_[i].second,
                    hspans_[i + 1].second, NGHTTP2_NV_FLAG_NONE});
  nghttp2_data_provider body{};
  body.source.ptr = this;
  body.read_callback = &core::read_data;
  if (!with_body) response_done_ = true;
  nghttp2_submit_response(c_.session_, id_, nva_.data(), nva_.size(), with_body ? &body : nullptr);
  c_.wake_writer();
}

void stream::start_response(const response_head& resp, body_kind body, std::uint64_t length) {
  hstore_.clear();
  hspans_.clear();
  status_ = resp.status;
  response_started_ = true;
  char num[24];
  auto r = std::to_chars(num, num + sizeof num, resp.status);
  add_response_field(":status", {num, static_cast<std::size_t>(r.ptr - num)});
  for (const auto& h : resp.fields()) {
    std::string_view n = h.name;
    // Connection-specific fields have no place in HTTP/2 (RFC 9113 8.2.2); a bodiless response
    // keeps the backend's content-length (it describes the representation).
    if (resp.is_hop_by_hop(n) || iequals(n, "x-request-id") ||
        (body != body_kind::none && iequals(n, "content-length")))
      continue;
    add_response_field(n, h.value);
  }
  add_response_field("x-request-id", request_id_);
  for (const auto& f : extra_fields_) add_response_field(f.name, f.value);
  sized_ = body == body_kind::content_length;
  if (sized_) {
    r = std::to_chars(num, num + sizeof num, length);
    add_response_field("content-length", {num, static_cast<std::size_t>(r.ptr - num)});
  }
}

asio::awaitable<bool> stream::send(std::span<const std::string_view> payload, bool last) {
  if (gone_) co_return false;
  for (auto p : payload) {
    out_.append(p);
    bytes_out_ += p.size();
  }
  if (last) last_ = true;
  if (!submitted_)
    submit(!(last_ && out_.size() == out_begin_ && !has_trailers_));
  else
    nghttp2_session_resume_data(c_.session_, id_);
  c_.wake_writer();
  // At most a stream window's worth waits for the client; past it the relay waits too, and a
  // client that keeps its window shut (or reads too slowly) loses the stream, not the backend.
  const auto& s = c_.env_.settings;
  auto patience = s.min_rate > 0 ? std::min(s.rate_window, s.idle_timeout) : s.idle_timeout;
  while (!gone_ && out_.size() - out_begin_ > s.stream_window) {
    std::size_t before = out_taken_;
    bool woke = co_await wait_until(c_.env_.clock->now() + patience);
    if (!woke && out_taken_ == before && !gone_) {
      note_ = "client did not open its flow-control window";
      reset(NGHTTP2_CANCEL, h2_reason::stalled);
      gone_ = true;
    }
  }
  co_return !gone_;
}

ssize_t stream::read_out(std::uint8_t* buf, std::size_t length, std::uint32_t* flags) {
  std::size_t avail = out_.size() - out_begin_;
  std::size_t n = std::min(avail, length);
  if (n > 0) {
    std::memcpy(buf, out_.data() + out_begin_, n);
    out_begin_ += n;
    out_taken_ += n;
    if (out_begin_ == out_.size()) {
      out_.clear();
      out_begin_ = 0;
    }
    wake();
  }
  if (out_.size() == out_begin_) {
    if (last_) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      response_done_ = true;
      if (has_trailers_) {
        // The stream ends with the trailers' HEADERS frame instead.
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        tnva_.clear();
        auto* base = reinterpret_cast<std::uint8_t*>(tstore_.data());
        for (std::size_t i = 0; i + 1 < tspans_.size(); i += 2)
          tnva_.push_back({base + tspans_[i].first, base + tspans_[i + 1].first, tspans_[i].second,
                           tspans_[i + 1].second, NGHTTP2_NV_FLAG_NONE});
        nghttp2_submit_trailer(c_.session_, id_, tnva_.data(), tnva_.size());
      }
      return static_cast<ssize_t>(n);
    }
    if (n == 0) return broken_ ? NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE : NGHTTP2_ERR_DEFERRED;
  }
  return static_cast<ssize_t>(n);
}

void stream::set_trailers(std::span<const header> fields) {
  tstore_.clear();
  tspans_.clear();
  for (const auto& f : fields) {
    if (f.name.empty() || f.name[0] == ':') continue;
    std::uint32_t at = static_cast<std::uint32_t>(tstore_.size());
    for (char ch : f.name)
      tstore_.push_back(ch >= 'A' && ch <= 'Z' ? static_cast<char>(ch + 32) : ch);
    tspans_.emplace_back(at, static_cast<std::uint32_t>(f.name.size()));
    tspans_.emplace_back(static_cast<std::uint32_t>(tstore_.size()),
                         static_cast<std::uint32_t>(f.value.size()));
    tstore_.append(f.value);
  }
  has_trailers_ = !tspans_.empty();
}

asio::awaitable<void> stream::reply_error(error_kind kind, std::string_view message) {
  note_.assign(message);
  auto ct = head_.find("content-type");
  if (ct.size() >= 16 && iequals(ct.substr(0, 16), "application/grpc")) {
    // A gRPC client reads a status, not an error page: a trailers-only response.
    if (submitted_ || gone_) co_return;
    hstore_.clear();
    hspans_.clear();
    status_ = 200;
    response_started_ = true;
    add_response_field(":status", "200");
    add_response_field("content-type", "application/grpc");
    add_response_field("grpc-status", std::to_string(common::grpc_status_of(kind)));
    add_response_field("grpc-message", common::grpc_message(message));
    add_response_field("x-request-id", request_id_);
    for (const auto& f : extra_fields_) add_response_field(f.name, f.value);
    out_.clear();
    out_begin_ = 0;
    last_ = true;
    submit(false);
    co_return;
  }
  auto body = common::error_body(kind, message);
  co_await reply(common::status_of(kind), "application/json", body, {},
                 common::retry_after_of(kind));
}

asio::awaitable<void> stream::reply(int status, std::string_view content_type,
                                    std::string_view body, std::string_view allow) {
  co_await reply(status, content_type, body, allow, 0);
}

asio::awaitable<void> stream::reply(int status, std::string_view content_type,
                                    std::string_view body, std::string_view allow,
                                    int retry_after_s) {
  if (submitted_ || gone_) co_return;  // a response already on its way cannot be replaced
  hstore_.clear();
  hspans_.clear();
  status_ = status;
  response_started_ = true;
  char num[24];
  auto r = std::to_chars(num, num + sizeof num, status);
  add_response_field(":status", {num, static_cast<std::size_t>(r.ptr - num)});
  if (!content_type.empty()) add_response_field("content-type", content_type);
  r = std::to_chars(num, num + sizeof num, body.size());
  add_response_field("content-length", {num, static_cast<std::size_t>(r.ptr - num)});
  add_response_field("x-request-id", request_id_);
  if (retry_after_s > 0) {
    r = std::to_chars(num, num + sizeof num, retry_after_s);
    add_response_field("retry-after", {num, static_cast<std::size_t>(r.ptr - num)});
  }
  if (!allow.empty()) add_response_field("allow", allow);
  for (const auto& f : extra_fields_) add_response_field(f.name, f.value);
  sized_ = true;
  out_.clear();
  out_begin_ = 0;
  if (method_ != "HEAD") out_.assign(body);
  bytes_out_ += out_.size();
  last_ = true;
  submit(!out_.empty());
  co_return;
}

}  // namespace meridian::http::h2
