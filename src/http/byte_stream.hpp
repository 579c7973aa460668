// What the HTTP/1.1 codec does with its byte stream, for a plain TCP socket and for TLS over one
// (tls::stream): read, write a gather list whole, tell a waiting client's data from its leaving,
// and say goodbye before the socket shuts down. Private to the codec (connection*.cpp); worker
// thread.
#pragma once

#include <sys/socket.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cerrno>
#include <span>

#include "meridian/runtime/write.hpp"
#include "meridian/tls/stream.hpp"

namespace meridian::http::byte_stream {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

inline auto read_some(tcp::socket& s, asio::mutable_buffer b) {
  return s.async_read_some(b, asio::as_tuple(asio::use_awaitable));
}
inline auto read_some(tls::stream& s, asio::mutable_buffer b) { return s.read_some(b); }

inline auto write_all(tcp::socket& s, std::span<const asio::const_buffer> b) {
  return runtime::write_all(s, b);
}
inline auto write_all(tcp::socket& s, std::span<const asio::const_buffer> b,
                      runtime::write_progress progress, void* ctx) {
  return runtime::write_all(s, b, progress, ctx);
}
inline auto write_all(tls::stream& s, std::span<const asio::const_buffer> b) {
  return s.write_all(b);
}
inline auto write_all(tls::stream& s, std::span<const asio::const_buffer> b,
                      runtime::write_progress progress, void* ctx) {
  return s.write_all(b, progress, ctx);
}

// 1: bytes wait to be read (or nothing is decided yet), 0: the client closed, -1: nothing yet.
inline int peek_client(tcp::socket& s) {
  char ch;
  ssize_t n = ::recv(s.native_handle(), &ch, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n > 0) return 1;
  if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) return 0;
  return -1;
}
inline int peek_client(tls::stream& s) { return s.peek_state(); }

// Before the socket's send side shuts down (TLS: close_notify, if it goes without waiting).
inline void say_goodbye(tcp::socket&) {}
inline void say_goodbye(tls::stream& s) { s.notify_close(); }

}  // namespace meridian::http::byte_stream
