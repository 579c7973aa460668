// http::connection, the response half: writes under the idle deadline and the client's pace,
// the response sink (a backend's head and payload, framed for HTTP/1.1) and the gateway's own
// replies. The rest of the codec is in connection.cpp.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <array>
#include <tuple>

#include "http/byte_stream.hpp"
#include "meridian/common/log.hpp"
#include "meridian/http/chunked.hpp"
#include "meridian/http/connection.hpp"
#include "meridian/http/headers.hpp"
#include "meridian/runtime/write.hpp"

namespace meridian::http {

using tcp = asio::ip::tcp;
using common::error_kind;

// ---- the response ----------------------------------------------------------------------------

namespace {

// The gateway's added fields, at the end of the head `out` begins with.
void insert_fields(std::string& out, std::span<const header> fields) {
  if (fields.empty()) return;
  std::string add;
  for (const auto& f : fields) {
    add.append(f.name);
    add.append(": ");
    add.append(f.value);
    add.append("\r\n");
  }
  out.insert(out.find("\r\n\r\n") + 2, add);
}

}  // namespace

// A write that progresses: the pace budget is spent on the wait and earned back by the bytes,
// and the deadline moves to what is left of it (within the idle timeout).
template <class Stream>
void basic_connection<Stream>::on_write_progress(void* self, std::size_t total) {
  auto& c = *static_cast<basic_connection*>(self);
  auto now = c.env_.clock->now();
  c.paced(c.write_pace_s_, now - c.write_progress_at_, total - c.write_progress_);
  c.write_progress_at_ = now;
  c.write_progress_ = total;
  c.deadline_.set(now + std::min(c.env_.settings.idle_timeout, pace_left(c.write_pace_s_)));
}

template <class Stream>
asio::awaitable<bool> basic_connection<Stream>::write(std::span<const asio::const_buffer> buffers) {
  if (buffers.empty()) co_return !client_gone_;
  const auto& s = env_.settings;
  auto now = env_.clock->now();
  std::tuple<boost::system::error_code, std::size_t> r;
  if (s.min_rate == 0) {
    deadline_.set(now + s.idle_timeout);
    r = co_await byte_stream::write_all(socket_, buffers);
  } else {
    // A client that reads slower than min_rate, past its window, is cut: the response it holds
    // (and the backend connection behind it) is freed.
    write_progress_at_ = now;
    write_progress_ = 0;
    deadline_.set(now + std::min(s.idle_timeout, pace_left(write_pace_s_)));
    r = co_await byte_stream::write_all(socket_, buffers, &basic_connection::on_write_progress, this);
    paced(write_pace_s_, env_.clock->now() - write_progress_at_, std::get<1>(r) - write_progress_);
  }
  auto [ec, n] = r;
  bool cut = deadline_.expired();
  deadline_.clear();
  bytes_out_ += n;
  // A client that has taken 4 MiB reads: the kernel's own send-buffer sizing from now on (the
  // cap costs a bulk transfer a wakeup per quarter MiB: 0.82x the rate on loopback, pinned).
  if (!send_cap_lifted_ && bytes_out_ >= (4u << 20)) {
    send_cap_lifted_ = true;
    constexpr int kernel_default = 0;
    ::setsockopt(lowest_layer().native_handle(), IPPROTO_TCP, TCP_NOTSENT_LOWAT, &kernel_default,
                 sizeof kernel_default);
  }
  if (ec) {
    if (cut && s.min_rate > 0)
      note_ = common::cat("client read the response slower than ", s.min_rate, " bytes/s");
    client_gone_ = true;
    co_return false;
  }
  co_return true;
}

template <class Stream>
void basic_connection<Stream>::start_response(const response_head& resp, body_kind body,
                                              std::uint64_t length) {
  // The whole request must have been read for another one to follow.
  bool keep = keep_alive() && body_.finished();
  out_framing framing = out_framing::none;
  chunked_out_ = sized_ = false;
  switch (body) {
    case body_kind::none:
      break;
    case body_kind::content_length:
      framing = out_framing::content_length;
      sized_ = true;
      break;
    case body_kind::chunked:
    case body_kind::until_close:
      chunked_out_ = head_.version_minor == 1;
      framing = chunked_out_ ? out_framing::chunked : out_framing::close_delimited;
      if (!chunked_out_) keep = false;
      break;
  }
  if (!keep) keep_alive_ = false;
  build_downstream_response(out_, resp, request_id_, framing, length, keep, head_.version_minor);
  insert_fields(out_, extra_fields_);
  status_ = resp.status;
  response_started_ = true;
  head_pending_ = response_open_ = true;
}

template <class Stream>
asio::awaitable<bool> basic_connection<Stream>::send(std::span<const std::string_view> payload,
                                                     bool last) {
  wout_.clear();
  if (head_pending_) wout_.push_back(asio::buffer(out_));
  head_pending_ = false;
  if (chunked_out_) {
    // Every chunk head first: the buffers point into chunk_heads_, which must not move after.
    chunk_heads_.clear();
    for (auto p : payload)
      if (!p.empty()) append_chunk_header(chunk_heads_, p.size());
    std::size_t at = 0;
    for (auto p : payload) {
      if (p.empty()) continue;  // an empty chunk would end the body
      std::size_t len = chunk_heads_.find('\n', at) + 1 - at;
      wout_.push_back(asio::buffer(chunk_heads_.data() + at, len));
      wout_.push_back(asio::buffer(p));
      wout_.push_back(asio::buffer(chunk_crlf));
      at += len;
    }
    if (last) wout_.push_back(asio::buffer(last_chunk));
  } else {
    for (auto p : payload)
      if (!p.empty()) wout_.push_back(asio::buffer(p));
  }
  if (last) response_open_ = false;
  // Not a coroutine: the relay awaits the write itself (one frame less per response).
  return write(wout_);
}

// A body already whole in the buffer is skipped before a local answer, so the connection can
// stay open; any other unread body makes it close.
template <class Stream>
void basic_connection<Stream>::skip_buffered_body() {
  if (body_.finished()) return;
  std::size_t at = begin_ + (head_kept_ ? head_len_ : 0);
  if (body_.validate({buf_.data() + at, end_ - at}) == request_body::status::complete)
    consume_body();
}

template <class Stream>
asio::awaitable<void> basic_connection<Stream>::reply(int status, std::string_view content_type,
                                                      std::string_view body,
                                                      std::string_view allow) {
  skip_buffered_body();
  bool keep = keep_alive() && body_.finished();
  if (!keep) keep_alive_ = false;
  if (request_id_.empty()) assign_request_id({});  // rejected before its head was read
  status_ = status;
  response_started_ = true;
  head_pending_ = response_open_ = sized_ = false;  // replaces a response started, never sent
  bool head_only = method_ == "HEAD";
  build_local_response(out_, status, content_type, head_only ? std::string_view{} : body, keep,
                       request_id_, 0, allow);
  insert_fields(out_, extra_fields_);
  std::array<asio::const_buffer, 1> b{asio::buffer(out_)};
  co_await write(b);
}

template <class Stream>
asio::awaitable<void> basic_connection<Stream>::reply_error(error_kind kind,
                                                            std::string_view message) {
  skip_buffered_body();
  bool keep = keep_alive() && body_.finished();
  if (!keep) keep_alive_ = false;
  if (request_id_.empty()) assign_request_id({});
  status_ = common::status_of(kind);
  response_started_ = true;
  head_pending_ = response_open_ = sized_ = false;  // replaces a response started, never sent
  note_.assign(message);
  auto body = common::error_body(kind, message);
  build_local_response(out_, status_, "application/json", body, keep, request_id_,
                       common::retry_after_of(kind));
  insert_fields(out_, extra_fields_);
  std::array<asio::const_buffer, 1> b{asio::buffer(out_)};
  co_await write(b);
}

// Defined here, instantiated here for both byte streams; the rest of basic_connection is
// instantiated in connection.cpp.
#define MERIDIAN_RESPONSE_HALF(S)                                                               \
  template void basic_connection<S>::on_write_progress(void*, std::size_t);                     \
  template asio::awaitable<bool> basic_connection<S>::write(std::span<const asio::const_buffer>); \
  template void basic_connection<S>::start_response(const response_head&, body_kind,            \
                                                    std::uint64_t);                             \
  template asio::awaitable<bool> basic_connection<S>::send(std::span<const std::string_view>,   \
                                                           bool);                               \
  template void basic_connection<S>::skip_buffered_body();                                      \
  template asio::awaitable<void> basic_connection<S>::reply(int, std::string_view,              \
                                                            std::string_view, std::string_view); \
  template asio::awaitable<void> basic_connection<S>::reply_error(error_kind, std::string_view);

MERIDIAN_RESPONSE_HALF(tcp::socket)
MERIDIAN_RESPONSE_HALF(tls::stream)
#undef MERIDIAN_RESPONSE_HALF

}  // namespace meridian::http
