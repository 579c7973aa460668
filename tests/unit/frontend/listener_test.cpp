#include "meridian/frontend/listener.hpp"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>

#include <stdexcept>

#include "support/raw_client.hpp"
#include "support/test_backend.hpp"
#include "unit/proxy/harness.hpp"

using namespace meridian;
namespace asio = boost::asio;

TEST_CASE("each listener binds once per worker, port 0 resolved once and shared") {
  test::test_backend be;
  auto cfg = config::load_string(
      "listeners: [ { name: a, address: 127.0.0.1:0 }, { name: b, address: 127.0.0.1:0 } ]\n"
      "access_log: false\n"
      "clusters: [ { name: c, endpoints: [ 127.0.0.1:" +
          std::to_string(be.port()) +
          " ] } ]\n"
          "routes: [ { match: { path_prefix: / }, cluster: c } ]\n",
      "t");
  test::proxy_harness h(cfg);
  std::unique_ptr<frontend::listener_set> ls;
  // Built and started on the worker's thread, as the gateway's workers see their acceptors.
  asio::post(*h.io, [&] {
    ls = std::make_unique<frontend::listener_set>(*cfg,
                                                  std::vector<http::connection_host*>{h.w.get()});
    ls->start();
  });
  REQUIRE(test::test_backend::eventually([&] { return ls != nullptr; }, std::chrono::seconds(2)));
  const auto& bound = ls->bound();
  REQUIRE(bound.size() == 2);
  CHECK(bound[0].rfind("a=127.0.0.1:", 0) == 0);
  CHECK(bound[1].rfind("b=127.0.0.1:", 0) == 0);
  CHECK(bound[0] != bound[1]);
  auto port = static_cast<std::uint16_t>(std::stoi(bound[1].substr(bound[1].rfind(':') + 1)));
  auto r = test::get(port, "/x");
  REQUIRE(r);
  CHECK(r->status == 200);
  ls->close();
  std::atomic<bool> gone{false};
  // Two hops: the accept loops see their cancelled accepts before the slots go.
  asio::post(*h.io, [&] {
    asio::post(*h.io, [&] {
      ls.reset();
      gone = true;
    });
  });
  CHECK(test::test_backend::eventually([&] { return gone.load(); }, std::chrono::seconds(2)));
}

TEST_CASE("a port another process listens on is refused, even when both ask for SO_REUSEPORT") {
  // What a second gateway on the same port looks like: a listening socket with SO_REUSEPORT.
  int other = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(other >= 0);
  int one = 1;
  ::setsockopt(other, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(other, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(other, 8) == 0);
  socklen_t len = sizeof addr;
  ::getsockname(other, reinterpret_cast<sockaddr*>(&addr), &len);
  auto port = std::to_string(ntohs(addr.sin_port));
  auto cfg = config::load_string("listeners: [ { name: a, address: 127.0.0.1:" + port +
                                     " } ]\n"
                                     "clusters: [ { name: c, endpoints: [ 127.0.0.1:9 ] } ]\n"
                                     "routes: [ { match: { path_prefix: / }, cluster: c } ]\n",
                                 "t");
  test::proxy_harness h(cfg);
  std::string error;
  std::atomic<bool> done{false};
  asio::post(*h.io, [&] {
    try {
      frontend::listener_set ls(*cfg, std::vector<http::connection_host*>{h.w.get()});
    } catch (const std::runtime_error& e) {
      error = e.what();
    }
    done = true;
  });
  REQUIRE(test::test_backend::eventually([&] { return done.load(); }, std::chrono::seconds(2)));
  CHECK(error == "cannot listen on 127.0.0.1:" + port +
                     " (a): the address is already in use by another process");
  ::close(other);
}
