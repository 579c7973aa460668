// The HTTP/2 connection's nghttp2 callbacks: streams opened (and refused past the limit),
// header fields and heads, body DATA, closes, what the gateway sent, and the counts that end a
// flooding client. The rest of the connection is in h2.cpp, the streams in h2_stream.cpp.
#include <algorithm>

#include "http/h2.hpp"

namespace meridian::http::h2 {

using metrics::h2_reason;

h2_reason reason_of_code(std::uint32_t code) {
  switch (code) {
    case NGHTTP2_PROTOCOL_ERROR:
      return h2_reason::protocol_error;
    case NGHTTP2_COMPRESSION_ERROR:
      return h2_reason::compression_error;
    case NGHTTP2_FLOW_CONTROL_ERROR:
      return h2_reason::flow_control;
    case NGHTTP2_REFUSED_STREAM:
      return h2_reason::refused;
    case NGHTTP2_ENHANCE_YOUR_CALM:
      return h2_reason::control_flood;
    default:
      return h2_reason::other;
  }
}

bool core::count_control_frame() {
  auto now = env_.clock->now();
  if (now - control_window_ >= std::chrono::seconds(1)) {
    control_window_ = now;
    control_frames_ = 0;
  }
  return ++control_frames_ <= control_per_second;
}

// ---- nghttp2's callbacks ------------------------------------------------------------------------

int core::on_begin_headers(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
  auto& c = *static_cast<core*>(user);
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  c.headers_pending_ = true;
  c.update_deadline();
  if (frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;  // trailers of an open stream
  auto id = frame->hd.stream_id;
  // Streams being served, reset ones included, stay within max_concurrent_streams: a client
  // resetting its streams cannot pile up handlers and upstream requests behind them.
  if (c.serving_ + c.ready_.size() >= c.env_.settings.max_concurrent_streams || c.closing_) {
    nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, id, NGHTTP2_REFUSED_STREAM);
    return 0;
  }
  std::unique_ptr<stream> s;
  if (c.spare_.empty()) {
    s = std::make_unique<stream>(c, id);
  } else {
    s = std::move(c.spare_.back());
    c.spare_.pop_back();
    s->reuse(id);
  }
  nghttp2_session_set_stream_user_data(session, id, s.get());
  s->slot_ = c.live_.size();
  c.live_.push_back(std::move(s));
  if (c.env_.metrics) c.env_.metrics->h2_streams().inc();
  return 0;
}

int core::on_header(nghttp2_session* session, const nghttp2_frame* frame, const std::uint8_t* name,
                    std::size_t namelen, const std::uint8_t* value, std::size_t valuelen,
                    std::uint8_t, void* user) {
  auto& c = *static_cast<core*>(user);
  auto* s = static_cast<stream*>(nghttp2_session_get_stream_user_data(session, frame->hd.stream_id));
  if (!s) return 0;
  bool ok = s->add_field({reinterpret_cast<const char*>(name), namelen},
                         {reinterpret_cast<const char*>(value), valuelen},
                         frame->headers.cat != NGHTTP2_HCAT_REQUEST);
  if (!ok) {
    // Far past the limit: an HPACK bomb. The connection ends.
    c.terminate(NGHTTP2_ENHANCE_YOUR_CALM, h2_reason::header_list_too_large);
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  }
  return 0;
}

int core::on_frame_recv(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
  auto& c = *static_cast<core*>(user);
  auto type = frame->hd.type;
  bool end_stream = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
  switch (type) {
    case NGHTTP2_SETTINGS:
    case NGHTTP2_PING:
      if (frame->hd.flags & NGHTTP2_FLAG_ACK) break;
      [[fallthrough]];
    case NGHTTP2_WINDOW_UPDATE:
    case NGHTTP2_PRIORITY:
      if (!c.count_control_frame()) c.terminate(NGHTTP2_ENHANCE_YOUR_CALM, h2_reason::control_flood);
      break;
    case NGHTTP2_RST_STREAM: {
      if (c.env_.metrics) c.env_.metrics->h2_client_resets().inc();
      auto now = c.env_.clock->now();
      c.reset_tokens_ = std::min(
          reset_burst, c.reset_tokens_ + reset_rate * common::seconds_between(c.reset_at_, now));
      c.reset_at_ = now;
      c.reset_tokens_ -= 1;
      if (c.reset_tokens_ < 0) c.terminate(NGHTTP2_ENHANCE_YOUR_CALM, h2_reason::rapid_reset);
      if (!c.count_control_frame()) c.terminate(NGHTTP2_ENHANCE_YOUR_CALM, h2_reason::control_flood);
      break;
    }
    case NGHTTP2_DATA: {
      if (frame->hd.length == 0 && !end_stream) {
        if (++c.empty_data_ > empty_data_in_a_row)
          c.terminate(NGHTTP2_ENHANCE_YOUR_CALM, h2_reason::control_flood);
      } else {
        c.empty_data_ = 0;
      }
      auto* s =
          static_cast<stream*>(nghttp2_session_get_stream_user_data(session, frame->hd.stream_id));
      if (s && end_stream) s->end_body();
      break;
    }
    case NGHTTP2_HEADERS: {
      c.headers_pending_ = false;
      c.update_deadline();
      auto* s =
          static_cast<stream*>(nghttp2_session_get_stream_user_data(session, frame->hd.stream_id));
      if (!s) break;
      if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
        s->finish_head(end_stream);
        s->queued_ = true;
        c.ready_.push_back(s);
      } else if (end_stream) {
        s->end_body();  // trailers end the body (their fields are not forwarded)
      }
      break;
    }
    default:
      break;
  }
  return 0;
}

int core::on_data_chunk(nghttp2_session* session, std::uint8_t, std::int32_t id,
                        const std::uint8_t* data, std::size_t len, void*) {
  nghttp2_session_consume_connection(session, len);
  auto* s = static_cast<stream*>(nghttp2_session_get_stream_user_data(session, id));
  if (!s) {
    nghttp2_session_consume_stream(session, id, len);
    return 0;
  }
  s->add_data(data, len);
  return 0;
}

int core::on_stream_close(nghttp2_session* session, std::int32_t id, std::uint32_t code,
                          void* user) {
  auto& c = *static_cast<core*>(user);
  auto* s = static_cast<stream*>(nghttp2_session_get_stream_user_data(session, id));
  if (!s) return 0;
  s->closed(code);
  c.release(s);
  return 0;
}

int core::on_frame_send(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
  auto& c = *static_cast<core*>(user);
  switch (frame->hd.type) {
    case NGHTTP2_GOAWAY:
      c.note_end(c.end_reason_set_ ? c.end_reason_ : reason_of_code(frame->goaway.error_code));
      break;
    case NGHTTP2_RST_STREAM: {
      auto code = frame->rst_stream.error_code;
      if (code == NGHTTP2_NO_ERROR) break;  // a response complete before its request body
      auto* s =
          static_cast<stream*>(nghttp2_session_get_stream_user_data(session, frame->hd.stream_id));
      auto why = s && s->has_reason_ ? s->reset_reason_ : reason_of_code(code);
      if (c.env_.metrics) c.env_.metrics->h2_reset(why).inc();
      break;
    }
    case NGHTTP2_DATA:
    case NGHTTP2_HEADERS: {
      if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) break;
      auto* s =
          static_cast<stream*>(nghttp2_session_get_stream_user_data(session, frame->hd.stream_id));
      // The response is complete and the client is still sending a body nobody reads: the
      // stream ends here (RFC 9113 8.1).
      if (s && !s->end_stream_)
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_NO_ERROR);
      break;
    }
    default:
      break;
  }
  return 0;
}

ssize_t core::read_data(nghttp2_session*, std::int32_t, std::uint8_t* buf, std::size_t length,
                        std::uint32_t* flags, nghttp2_data_source* source, void*) {
  return static_cast<stream*>(source->ptr)->read_out(buf, length, flags);
}

}  // namespace meridian::http::h2
