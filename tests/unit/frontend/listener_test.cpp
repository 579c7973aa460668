#include "meridian/frontend/listener.hpp"

#include <doctest/doctest.h>

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
    ls = std::make_unique<frontend::listener_set>(*cfg, std::vector<proxy::worker*>{h.w.get()});
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
