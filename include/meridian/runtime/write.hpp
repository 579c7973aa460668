// Writing a gather list whole on a socket. One or two buffers (the usual head + body) take Asio's
// small write operation, which its per-thread cache recycles; longer lists take the general one
// (sized for 64 buffers, too big for that cache). Used by one socket's owner on its worker thread.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <cstddef>
#include <span>
#include <tuple>

namespace meridian::runtime {

// Not a coroutine: the caller awaits Asio's operation directly. The list is copied into the
// operation; the bytes it points to must outlive it.
boost::asio::awaitable<std::tuple<boost::system::error_code, std::size_t>> write_all(
    boost::asio::ip::tcp::socket& socket, std::span<const boost::asio::const_buffer> buffers);

// The same, calling `progress(ctx, total)` after each partial write with the bytes written so
// far (a deadline that moves with the peer's pace).
using write_progress = void (*)(void* ctx, std::size_t total);
boost::asio::awaitable<std::tuple<boost::system::error_code, std::size_t>> write_all(
    boost::asio::ip::tcp::socket& socket, std::span<const boost::asio::const_buffer> buffers,
    write_progress progress, void* ctx);

}  // namespace meridian::runtime
