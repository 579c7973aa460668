#include "meridian/runtime/write.hpp"

#include <doctest/doctest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>

#include <array>
#include <string>

using namespace meridian;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

TEST_CASE("gather lists of any length arrive whole and in order") {
  asio::io_context io;
  tcp::acceptor acc(io, {asio::ip::make_address("127.0.0.1"), 0});
  tcp::socket out(io), in(io);
  out.connect(acc.local_endpoint());
  acc.accept(in);
  std::string got;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        std::array<asio::const_buffer, 1> one{asio::buffer(std::string_view("a"))};
        std::array<asio::const_buffer, 2> two{asio::buffer(std::string_view("bc")),
                                              asio::buffer(std::string_view("d"))};
        std::array<asio::const_buffer, 3> three{asio::buffer(std::string_view("e")),
                                                asio::buffer(std::string_view("")),
                                                asio::buffer(std::string_view("fg"))};
        auto [e1, n1] = co_await runtime::write_all(out, one);
        auto [e2, n2] = co_await runtime::write_all(out, two);
        auto [e3, n3] = co_await runtime::write_all(out, three);
        CHECK_FALSE(e1);
        CHECK_FALSE(e2);
        CHECK_FALSE(e3);
        CHECK(n1 + n2 + n3 == 7);
      },
      asio::detached);
  io.run();
  got.resize(7);
  asio::read(in, asio::buffer(got));
  CHECK(got == "abcdefg");
}
