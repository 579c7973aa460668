// upstream::link: one connection to a backend endpoint as a try uses it (connect, write, read,
// shut down, close) and as the pool keeps it. Plain TCP today; TLS to backends becomes a second
// kind behind this interface. The socket type stays inside upstream: the proxy sees only this.
// Owned and used by one worker thread.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/system/error_code.hpp>

#include <cstddef>
#include <memory>
#include <span>
#include <tuple>

namespace meridian::upstream {

struct endpoint_info;

class link {
 public:
  link();
  ~link();
  link(link&&) noexcept;
  link& operator=(link&&) noexcept;

  // A new, unconnected connection on `io`.
  static link make(boost::asio::io_context& io);
  explicit operator bool() const { return impl_ != nullptr; }

  // Not coroutines: each returns Asio's operation to await (no frame of its own).
  // Connects to `ep`'s resolved address.
  boost::asio::awaitable<std::tuple<boost::system::error_code>> connect(const endpoint_info& ep);
  boost::asio::awaitable<std::tuple<boost::system::error_code, std::size_t>> read_some(
      boost::asio::mutable_buffer into);
  // Writes the whole list (runtime::write_all).
  boost::asio::awaitable<std::tuple<boost::system::error_code, std::size_t>> write(
      std::span<const boost::asio::const_buffer> buffers);

  // After connecting: small writes go out at once.
  void set_no_delay();
  // Ends both directions; an operation in progress ends by itself (EOF, EPIPE). Never closed or
  // cancelled under a pending operation: on Asio 1.81's io_uring backend that let a later
  // completion corrupt other requests (loadtest/RESULTS.md).
  void shutdown();
  void close();
  // Whether an idle connection may carry a request: nothing to read (no EOF from the backend,
  // no bytes it should not have sent). One syscall.
  bool still_usable() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace meridian::upstream
