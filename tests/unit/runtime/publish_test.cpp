#include "meridian/runtime/publish.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace meridian;

TEST_CASE("a snapshot reaches every worker on that worker's own context") {
  boost::asio::io_context a, b;
  std::vector<boost::asio::io_context*> workers{&a, &b};
  auto snap = std::make_shared<const std::string>("routes v2");
  std::vector<std::shared_ptr<const std::string>> got(2);
  runtime::publish<std::string>(
      workers, snap,
      [&](std::size_t i, std::shared_ptr<const std::string> s) { got[i] = std::move(s); });
  CHECK_FALSE(got[0]);  // nothing is applied until the worker runs
  a.run();
  CHECK(got[0] == snap);
  CHECK_FALSE(got[1]);
  b.run();
  CHECK(got[1] == snap);
  CHECK(snap.use_count() == 3);
}
