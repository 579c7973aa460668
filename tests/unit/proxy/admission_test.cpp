// Admission under overload: slots, the bounded queue by priority, shedding, expiry and a
// client that leaves while it waits. Timers on a manual clock: nothing sleeps.
#include "proxy/admission.hpp"

#include <doctest/doctest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include <memory>
#include <string>
#include <vector>

using namespace meridian;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using proxy::admission;
using proxy::priority;
using verdict = admission::verdict;

namespace {
// One request: waits for admission and records its verdict in `log` as "<name>:<verdict>".
struct request {
  std::string name;
  std::unique_ptr<admission::waiter> w;
  std::optional<verdict> got;
};

const char* text(verdict v) {
  switch (v) {
    case verdict::admitted:
      return "admitted";
    case verdict::queue_full:
      return "queue_full";
    case verdict::timed_out:
      return "timed_out";
    case verdict::displaced:
      return "displaced";
    case verdict::cancelled:
      return "cancelled";
  }
  return "?";
}

void start(asio::io_context& io, admission& a, request& r, std::vector<std::string>& log) {
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        r.got = co_await a.enter(*r.w);
        log.push_back(r.name + ":" + text(*r.got));
      },
      asio::detached);
}

common::manual_clock test_clock;

request make(asio::io_context& io, std::string name, priority p) {
  return {std::move(name), std::make_unique<admission::waiter>(io, test_clock, p), std::nullopt};
}
}  // namespace

TEST_CASE("slots are taken at once while free; no limit means every request") {
  admission a(2, 4, 1s);
  CHECK(a.try_enter());
  CHECK(a.try_enter());
  CHECK_FALSE(a.try_enter());
  a.leave();
  CHECK(a.try_enter());
  CHECK(a.inflight() == 2);
  admission open(0, 0, 1s);
  for (int i = 0; i < 1000; ++i) CHECK(open.try_enter());
}

TEST_CASE("a freed slot goes to the highest priority waiting, then in arrival order") {
  asio::io_context io;
  admission a(1, 8, 10s);
  REQUIRE(a.try_enter());
  std::vector<std::string> log;
  auto s1 = make(io, "s1", priority::standard);
  auto low = make(io, "low", priority::sheddable);
  auto s2 = make(io, "s2", priority::standard);
  auto crit = make(io, "crit", priority::critical);
  for (auto* r : {&s1, &low, &s2, &crit}) start(io, a, *r, log);
  io.poll();
  CHECK(a.pending() == 4);
  for (int i = 0; i < 4; ++i) {
    a.leave();
    io.poll();
  }
  CHECK(log ==
        std::vector<std::string>{"crit:admitted", "s1:admitted", "s2:admitted", "low:admitted"});
  CHECK(a.inflight() == 1);  // each slot passed on; the last holder still has one
  CHECK(a.pending() == 0);
}

TEST_CASE("a full queue sheds its lowest priority, newest first, or the newcomer") {
  asio::io_context io;
  admission a(1, 2, 10s);
  REQUIRE(a.try_enter());
  std::vector<std::string> log;
  auto low1 = make(io, "low1", priority::sheddable);
  auto low2 = make(io, "low2", priority::sheddable);
  auto low3 = make(io, "low3", priority::sheddable);
  auto crit = make(io, "crit", priority::critical);
  start(io, a, low1, log);
  start(io, a, low2, log);
  io.poll();
  start(io, a, low3, log);  // no higher than what waits: refused at once
  io.poll();
  start(io, a, crit, log);  // displaces the newest sheddable waiter
  io.poll();
  CHECK(log == std::vector<std::string>{"low3:queue_full", "low2:displaced"});
  CHECK(a.pending() == 2);
  a.leave();
  io.poll();
  CHECK(log.back() == "crit:admitted");
}

TEST_CASE("a waiter gives up at its timeout; one whose client left goes at once") {
  asio::io_context io;
  admission a(1, 4, 50ms);
  REQUIRE(a.try_enter());
  std::vector<std::string> log;
  auto slow = make(io, "slow", priority::standard);
  auto gone = make(io, "gone", priority::standard);
  start(io, a, slow, log);
  start(io, a, gone, log);
  io.poll();
  gone.w->cancel();
  io.poll();
  CHECK(log == std::vector<std::string>{"gone:cancelled"});
  test_clock.advance(49ms);
  io.poll();
  CHECK(log.size() == 1);  // not yet
  test_clock.advance(1ms);
  io.poll();
  CHECK(log.back() == "slow:timed_out");
  CHECK(a.pending() == 0);
  // Nothing waits: the slot is simply free again.
  a.leave();
  CHECK(a.inflight() == 0);
}

TEST_CASE("priorities parse from their names") {
  CHECK(proxy::parse_priority("critical") == priority::critical);
  CHECK(proxy::parse_priority("sheddable") == priority::sheddable);
  CHECK_FALSE(proxy::parse_priority("urgent"));
}

TEST_CASE("a client holding its share of a full cluster is told so; others still queue") {
  asio::io_context io;
  admission a(4, 8, 1s);
  a.configure(4, 8, 1s, 0.5);  // one client: at most 2 of the 4 slots
  const std::uint64_t heavy = 7, light = 9;
  CHECK(a.try_enter(heavy));
  CHECK(a.try_enter(heavy));
  CHECK(a.try_enter(light));
  CHECK(a.try_enter(0));  // a request without a key counts for the cluster only
  CHECK_FALSE(a.try_enter(heavy));
  CHECK(a.over_share(heavy));
  CHECK_FALSE(a.over_share(light));
  CHECK_FALSE(a.over_share(0));
  // A slot handed to a waiting client counts for it; one given back stops counting.
  std::vector<std::string> log;
  auto r = request{"light",
                   std::make_unique<admission::waiter>(io, test_clock, priority::standard, light),
                   std::nullopt};
  start(io, a, r, log);
  io.poll();
  a.leave(heavy);
  io.poll();
  CHECK(log == std::vector<std::string>{"light:admitted"});
  CHECK_FALSE(a.over_share(heavy));
  CHECK(a.over_share(light));
  // Without a share nobody is over it.
  a.configure(4, 8, 1s, 0);
  CHECK_FALSE(a.over_share(light));
}
