#include "meridian/common/clock.hpp"

#include <doctest/doctest.h>

using namespace meridian::common;
using namespace std::chrono_literals;

TEST_CASE("a manual clock moves only when told to") {
  manual_clock c;
  auto t0 = c.now();
  CHECK(c.now() == t0);
  c.advance(250ms);
  CHECK(c.now() - t0 == 250ms);
  CHECK(seconds_between(t0, c.now()) == doctest::Approx(0.25));
}

TEST_CASE("the steady clock never goes back") {
  auto a = steady().now();
  auto b = steady().now();
  CHECK(b >= a);
}
