// Serves http::connection with a given handler on 127.0.0.1:0, on its own thread, for unit
// tests of what runs behind the connection. The io_context, environment and handler belong to
// the caller and must outlive this object (declare them before it).
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <thread>

#include "meridian/http/connection.hpp"

namespace test {

class connection_server {
 public:
  connection_server(boost::asio::io_context& io, meridian::http::connection_env& env,
                    meridian::http::handler& h)
      : io_(io), env_(env), h_(h), acceptor_(io, {boost::asio::ip::make_address("127.0.0.1"), 0}) {
    boost::asio::co_spawn(io_, accept(), boost::asio::detached);
    thread_ = std::thread([this] { io_.run_for(std::chrono::seconds(20)); });
  }
  ~connection_server() {
    boost::asio::post(io_, [this] { io_.stop(); });
    thread_.join();
  }
  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }

 private:
  boost::asio::awaitable<void> accept() {
    while (true) {
      auto [ec, s] =
          co_await acceptor_.async_accept(boost::asio::as_tuple(boost::asio::use_awaitable));
      if (ec) co_return;
      meridian::http::connection::start(io_, std::move(s), env_, h_);
    }
  }
  boost::asio::io_context& io_;
  meridian::http::connection_env& env_;
  meridian::http::handler& h_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::thread thread_;
};

}  // namespace test
