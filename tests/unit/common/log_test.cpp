#include "meridian/common/log.hpp"

#include <doctest/doctest.h>

using namespace std::chrono_literals;
using meridian::common::log_limiter;

TEST_CASE("a repeated warning is logged a few times per window, then counted") {
  log_limiter lim(3, 10s);
  auto t = std::chrono::steady_clock::time_point{} + 100s;
  std::uint64_t left = 99;
  int logged = 0;
  for (int i = 0; i < 100; ++i) logged += lim.allow(t + i * 10ms, left);
  CHECK(logged == 3);
  CHECK(left == 0);  // the lines that were logged had nothing left out before them
  // The next window: the first line says how many the last one left out.
  CHECK(lim.allow(t + 10s, left));
  CHECK(left == 97);
  CHECK(lim.allow(t + 10s + 1ms, left));
  CHECK(left == 0);
  CHECK(meridian::common::left_out(97) == " (97 similar lines left out)");
  CHECK(meridian::common::left_out(0).empty());
}
