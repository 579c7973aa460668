#include "meridian/proxy/hedge_policy.hpp"

#include <doctest/doctest.h>

using namespace meridian;
using namespace std::chrono_literals;
using proxy::hedge_policy;

namespace {
common::time_point t0() {
  return common::time_point{} + 1000s;
}
config::hedge_config hedge(double quantile, common::duration after, double max_extra) {
  config::hedge_config c;
  c.enabled = true;
  c.quantile = quantile;
  c.after = after;
  c.max_extra = max_extra;
  return c;
}
}  // namespace

TEST_CASE("a route without hedge never hedges") {
  hedge_policy p;
  CHECK_FALSE(p.enabled());
  CHECK_FALSE(p.hedge_at(t0()));
}

TEST_CASE("a fixed delay hedges from the try's start") {
  hedge_policy p(hedge(0, 150ms, 0.1));
  REQUIRE(p.hedge_at(t0()));
  CHECK(*p.hedge_at(t0()) == t0() + 150ms);
}

TEST_CASE("a percentile delay waits for enough samples, then follows them") {
  hedge_policy p(hedge(0.9, {}, 0.1));
  for (int i = 1; i < static_cast<int>(hedge_policy::min_samples); ++i) p.observe(i * 0.01);
  CHECK_FALSE(p.hedge_at(t0()));  // 19 samples
  p.observe(0.20);
  CHECK(p.delay() == doctest::Approx(0.18));  // p90 of 0.01 .. 0.20
  // The window keeps the last 256: a slower regime takes over.
  for (int i = 0; i < 256; ++i) p.observe(1.0 + (i % 10) * 0.1);
  CHECK(p.delay() == doctest::Approx(1.8));
  // A reload to another percentile applies at once.
  p.configure(hedge(0.5, {}, 0.1));
  CHECK(p.delay() == doctest::Approx(1.4));
}

TEST_CASE("hedges stay under max_extra of the requests") {
  hedge_policy p(hedge(0, 100ms, 0.05));
  auto now = t0();
  int sent = 0;
  for (int i = 0; i < 1000; ++i) {
    now += 10ms;
    p.on_request(now);
    sent += p.try_spend(now);  // every request would hedge
  }
  CHECK(sent >= 45);
  CHECK(sent <= 55);
}
