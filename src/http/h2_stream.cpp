// An HTTP/2 request stream as an http::exchange: its head from the decoded header list, its body
// buffered under stream flow control (returned to the client's window as the handler takes it),
// its response queued as DATA for nghttp2 to frame, and the client's reset as a cancellation.
// The connection half is in h2.cpp.
#include <boost/asio/error.hpp>
#include <charconv>
#include <cstring>

#include "http/h2.hpp"
#include "meridian/common/log.hpp"
#include "meridian/http/chunked.hpp"
#include "meridian/http/headers.hpp"

namespace meridian::http::h2 {

using common::error_kind;
using metrics::h2_reason;

stream::stream(core& c, std::int32_t id)
    : c_(c), id_(id), request_start_(c.env_.clock->now()), wake_(c.io_, *c.env_.clock) {}

stream::~stream() = default;

void stream::reuse(std::int32_t id) {
  id_ = id;
  // A buffer grown by a large body or response goes back to the allocator.
  for (auto* b : {&raw_, &taken_, &out_})
    if (b->capacity() > 64 * 1024) std::string().swap(*b);
  arena_.clear();
  spans_.clear();
  fields_.clear();
  pseudo_method_ = pseudo_path_ = pseudo_authority_ = pseudo_scheme_ = {};
  list_bytes_ = field_count_ = 0;
  refused_size_ = false;
  head_ = request_head{};
  request_id_.clear();
  method_.clear();
  path_.clear();
  note_.clear();
  cookies_.clear();
  request_start_ = c_.env_.clock->now();
  body_deadline_ = {};
  body_.start(body_kind::none, 0, 0);
  raw_.clear();
  taken_.clear();
  begin_ = unacked_ = want_ = 0;
  payload_in_ = 0;
  too_large_ = end_stream_ = false;
  hstore_.clear();
  hspans_.clear();
  nva_.clear();
  out_.clear();
  out_begin_ = out_taken_ = 0;
  tstore_.clear();
  tspans_.clear();
  tnva_.clear();
  has_trailers_ = false;
  extra_fields_ = {};
  response_started_ = submitted_ = last_ = sized_ = false;
  head_only_ = broken_ = response_done_ = false;
  status_ = 0;
  bytes_in_ = bytes_out_ = 0;
  waiting_ = false;
  watch_ = nullptr;
  gone_ = serving_ = h2_closed_ = false;
  has_reason_ = false;
  reset_reason_ = h2_reason::other;
  queued_ = false;
}

std::string_view stream::client_ip() const { return c_.client_ip_; }
std::string_view stream::scheme() const { return c_.secure_ ? "https" : "http"; }
std::string_view stream::tls_version() const { return c_.tls_version_; }
std::string_view stream::client_subject() const { return c_.client_subject_; }

// ---- the request head ------------------------------------------------------------------------

bool stream::add_field(std::string_view name, std::string_view value, bool trailer) {
  const auto& lim = c_.env_.settings.limits;
  list_bytes_ += name.size() + value.size() + 32;  // RFC 9113 6.5.2's accounting
  bytes_in_ += name.size() + value.size();
  // Decoding goes on past the limit (HPACK's state must follow), but not without end.
  if (list_bytes_ > 4 * lim.max_head_bytes) return false;
  if (trailer) return true;  // request trailers are not forwarded
  if (list_bytes_ > lim.max_head_bytes || ++field_count_ > lim.max_headers) {
    refused_size_ = true;
    return true;
  }
  if (refused_size_) return true;
  if (name == "cookie") {  // RFC 9113 8.2.3: one field again for HTTP/1.1
    if (!cookies_.empty()) cookies_.append("; ");
    cookies_.append(value);
    return true;
  }
  for (auto part : {name, value}) {
    spans_.emplace_back(static_cast<std::uint32_t>(arena_.size()),
                        static_cast<std::uint32_t>(part.size()));
    arena_.append(part);
  }
  return true;
}

void stream::finish_head(bool end_stream) {
  std::string_view a = arena_;
  fields_.clear();
  for (std::size_t i = 0; i + 1 < spans_.size(); i += 2) {
    auto name = a.substr(spans_[i].first, spans_[i].second);
    auto value = a.substr(spans_[i + 1].first, spans_[i + 1].second);
    if (!name.empty() && name[0] == ':') {
      if (name == ":method") pseudo_method_ = value;
      else if (name == ":path") pseudo_path_ = value;
      else if (name == ":authority") pseudo_authority_ = value;
      else if (name == ":scheme") pseudo_scheme_ = value;
      continue;
    }
    fields_.push_back({name, value});
  }
  if (!cookies_.empty()) fields_.push_back({"cookie", cookies_});
  head_.headers = fields_;
  head_.header_count = fields_.size();
  head_.version_minor = 1;
  head_.keep_alive = true;
  head_.method = pseudo_method_;
  head_.target = head_.path = pseudo_path_;
  head_.host = pseudo_authority_.empty() ? head_.find("host") : pseudo_authority_;
  head_.expect_continue = false;
  method_.assign(pseudo_method_);
  path_.assign(pseudo_path_);
  make_request_id(request_id_, head_.find("x-request-id"), *c_.env_.rng);
  // The body as the handler sees it: none, a declared length (nghttp2 holds the DATA to it), or
  // a stream of unknown length, framed as chunks in the buffer.
  auto cl = head_.find("content-length");
  std::uint64_t length = 0;
  body_kind kind = body_kind::none;
  if (end_stream) {
    end_stream_ = true;
  } else if (!cl.empty()) {
    std::from_chars(cl.data(), cl.data() + cl.size(), length);  // checked by nghttp2
    kind = body_kind::content_length;
  } else {
    kind = body_kind::chunked;
  }
  head_.body = kind;
  head_.content_length = length;
  body_.start(kind, length, c_.env_.settings.max_body_bytes);
  body_deadline_ = c_.env_.clock->now() + c_.env_.settings.body_timeout;
}

// ---- the request body ------------------------------------------------------------------------

void stream::add_data(const std::uint8_t* data, std::size_t len) {
  bytes_in_ += len;
  payload_in_ += len;
  unacked_ += len;
  if (payload_in_ > c_.env_.settings.max_body_bytes) {
    // Not buffered past the limit; the handler learns it is too large.
    too_large_ = true;
  } else if (head_.body == body_kind::chunked) {
    append_chunk_header(raw_, len);
    raw_.append(reinterpret_cast<const char*>(data), len);
    raw_.append(chunk_crlf);
  } else {
    raw_.append(reinterpret_cast<const char*>(data), len);
  }
  ack();
  wake();
}

void stream::end_body() {
  if (end_stream_) return;
  end_stream_ = true;
  if (head_.body == body_kind::chunked) raw_.append(last_chunk);
  wake();
}

void stream::ack() {
  if (unacked_ == 0 || h2_closed_ || too_large_) return;
  std::size_t buffered = raw_.size() - begin_;
  std::size_t allowance = std::max<std::size_t>(c_.env_.settings.stream_window, want_);
  if (buffered > allowance) return;  // the client waits until the handler takes some
  nghttp2_session_consume_stream(c_.session_, id_, unacked_);
  unacked_ = 0;
  c_.wake_writer();
}

void stream::take_out_of_buffer(std::size_t n) {
  begin_ += n;
  if (begin_ == raw_.size()) {
    raw_.clear();
    begin_ = 0;
  } else if (begin_ > 64 * 1024 && begin_ * 2 > raw_.size()) {
    raw_.erase(0, begin_);
    begin_ = 0;
  }
  ack();
}

bool stream::body_buffered(std::size_t want) {
  auto st = body_.validate(std::string_view(raw_).substr(begin_));
  return st == request_body::status::complete ||
         (st == request_body::status::more && body_.validated() >= want);
}

std::string_view stream::buffered_body() const {
  return std::string_view(raw_).substr(begin_, body_.validated());
}

void stream::consume_body() {
  std::size_t v = body_.validated();
  body_.consume_all();
  take_out_of_buffer(v);
}

asio::awaitable<body_result> stream::buffer_body(std::size_t want) {
  want_ = want;
  ack();
  while (true) {
    if (too_large_) co_return body_result::too_large;
    auto st = body_.validate(std::string_view(raw_).substr(begin_));
    if (st == request_body::status::malformed || st == request_body::status::too_large)
      co_return body_result_of(st);
    if (st == request_body::status::complete || body_.validated() >= want) co_return body_result::ok;
    if (gone_) co_return body_result::client_gone;
    if (!co_await wait_until(body_deadline_)) {
      note_ = "request body timeout";
      co_return body_result::timeout;
    }
  }
}

asio::awaitable<body_result> stream::read_body(std::span<std::string_view> spans, std::size_t& n) {
  n = 0;
  while (true) {
    if (too_large_) co_return body_result::too_large;
    std::string_view raw = std::string_view(raw_).substr(begin_);
    auto st = body_.validate(raw);
    if (st == request_body::status::malformed || st == request_body::status::too_large)
      co_return body_result_of(st);
    if (body_.validated() > 0) {
      // The spans must outlive DATA arriving while they are forwarded: they point into a copy.
      taken_.assign(raw.substr(0, body_.validated()));
      std::size_t used = body_.take(taken_, spans.data(), spans.size(), n);
      take_out_of_buffer(used);
      if (n > 0) co_return body_result::ok;
      continue;
    }
    if (body_.finished()) co_return body_result::ok;
    // Gone, or closed after the response ended: no more body will come.
    if (gone_ || h2_closed_) co_return body_result::client_gone;
    if (!co_await wait_until(body_deadline_)) {
      note_ = "request body timeout";
      co_return body_result::timeout;
    }
  }
}

// ---- waiting and cancellation ------------------------------------------------------------------

void stream::wake() {
  if (waiting_) wake_.cancel();
}

asio::awaitable<bool> stream::wait_until(common::time_point deadline) {
  waiting_ = true;
  wake_.expires_at(deadline);
  auto ec = co_await wake_.wait();
  waiting_ = false;
  co_return ec == asio::error::operation_aborted;
}

void stream::watch_client(cancellable* target) {
  watch_ = target;
  if (gone_ && target) target->cancel();
}

void stream::closed(std::uint32_t code) {
  h2_closed_ = true;
  if (!response_done_ && !gone_) {
    gone_ = true;
    if (note_.empty())
      note_ = common::cat("client reset the stream (", nghttp2_http2_strerror(code), ")");
    if (watch_) watch_->cancel();
  }
  wake();
}

void stream::lost() {
  if (!response_done_ && !gone_) {
    gone_ = true;
    if (note_.empty()) note_ = "client closed the connection";
    if (watch_) watch_->cancel();
  }
  wake();
}

void stream::reset(std::uint32_t code, h2_reason why) {
  if (h2_closed_) return;
  has_reason_ = true;
  reset_reason_ = why;
  nghttp2_submit_rst_stream(c_.session_, NGHTTP2_FLAG_NONE, id_, code);
  c_.wake_writer();
}

// ---- serving -----------------------------------------------------------------------------------

asio::awaitable<void> stream::serve() {
  const auto& s = c_.env_.settings;
  auto* m = c_.env_.metrics;
  if (refused_size_) {
    if (m) m->rejected(metrics::reject_reason::head_too_large).inc();
    co_await reply_error(error_kind::header_too_large, "request header list exceeds the size limit");
    c_.handler_.rejected(*this);
  } else if (method_ == "CONNECT") {
    if (m) m->rejected(metrics::reject_reason::bad_request).inc();
    co_await reply_error(error_kind::bad_request, "CONNECT is not served");
    c_.handler_.rejected(*this);
  } else if (head_.body == body_kind::content_length && head_.content_length > s.max_body_bytes) {
    if (m) m->rejected(metrics::reject_reason::body_too_large).inc();
    co_await reply_error(error_kind::payload_too_large,
                         common::cat("request body of ", head_.content_length,
                                     " bytes exceeds the limit of ", s.max_body_bytes));
    c_.handler_.rejected(*this);
  } else {
    co_await c_.handler_.serve(*this);
  }
  watch_ = nullptr;
  if (h2_closed_ || gone_) {  // reset by the client, or by the gateway already (a stall)
    c_.wake_writer();
    co_return;
  }
  if (!response_started_) {
    reset(NGHTTP2_INTERNAL_ERROR, h2_reason::other);
  } else if (!last_) {
    // Broken off upstream: what was queued goes out, then the stream is reset, so the client
    // can tell it from a complete response.
    has_reason_ = true;
    reset_reason_ = h2_reason::broken;
    if (!submitted_) {
      reset(NGHTTP2_INTERNAL_ERROR, h2_reason::broken);
    } else {
      broken_ = true;
      nghttp2_session_resume_data(c_.session_, id_);
    }
  }
  c_.wake_writer();
}

}  // namespace meridian::http::h2
