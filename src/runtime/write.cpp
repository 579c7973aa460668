#include "meridian/runtime/write.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <array>

namespace meridian::runtime {

namespace asio = boost::asio;

asio::awaitable<std::tuple<boost::system::error_code, std::size_t>> write_all(
    asio::ip::tcp::socket& socket, std::span<const asio::const_buffer> buffers) {
  constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
  if (buffers.size() <= 2) {
    std::array<asio::const_buffer, 2> two{buffers.empty() ? asio::const_buffer{} : buffers[0],
                                          buffers.size() > 1 ? buffers[1] : asio::const_buffer{}};
    return asio::async_write(socket, two, use_tuple);
  }
  return asio::async_write(socket, buffers, use_tuple);
}

asio::awaitable<std::tuple<boost::system::error_code, std::size_t>> write_all(
    asio::ip::tcp::socket& socket, std::span<const asio::const_buffer> buffers,
    write_progress progress, void* ctx) {
  constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
  auto condition = [progress, ctx](const boost::system::error_code& ec,
                                   std::size_t total) -> std::size_t {
    if (ec) return 0;
    if (total > 0) progress(ctx, total);
    return asio::detail::default_max_transfer_size;
  };
  if (buffers.size() <= 2) {
    std::array<asio::const_buffer, 2> two{buffers.empty() ? asio::const_buffer{} : buffers[0],
                                          buffers.size() > 1 ? buffers[1] : asio::const_buffer{}};
    return asio::async_write(socket, two, condition, use_tuple);
  }
  return asio::async_write(socket, buffers, condition, use_tuple);
}

}  // namespace meridian::runtime
