// runtime::timer on both kinds of clock: the kernel's steady clock, and a manual clock whose
// advance ends a wait at its time (so tests of timeouts need no sleeping).
#include "meridian/runtime/timer.hpp"

#include <doctest/doctest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include <optional>

#include "meridian/runtime/watchdog.hpp"

using namespace meridian;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using error_code = boost::system::error_code;

namespace {
// Starts a wait on `t`; its result lands in `got`.
void wait_on(asio::io_context& io, runtime::timer& t, std::optional<error_code>& got) {
  asio::co_spawn(
      io,
      [](runtime::timer& tm, std::optional<error_code>& g) -> asio::awaitable<void> {
        g = co_await tm.wait();
      }(t, got),
      asio::detached);
}
// Runs what is ready (an io_context that ran out of work must be restarted first).
void poll(asio::io_context& io) {
  io.restart();
  io.poll();
}
}  // namespace

TEST_CASE("on a manual clock a wait ends when the clock reaches its time, not before") {
  asio::io_context io;
  common::manual_clock clock;
  runtime::timer t(io, clock);
  std::optional<error_code> got;
  t.expires_after(100ms);
  wait_on(io, t, got);
  poll(io);
  CHECK_FALSE(got);
  clock.advance(99ms);
  poll(io);
  CHECK_FALSE(got);
  clock.advance(1ms);
  poll(io);
  REQUIRE(got);
  CHECK_FALSE(*got);  // the time came: no error
}

TEST_CASE("a manual clock's wait already due ends at once; cancel() ends one early") {
  asio::io_context io;
  common::manual_clock clock;
  runtime::timer t(io, clock);
  std::optional<error_code> got;
  t.expires_at(clock.now() - 1ms);
  wait_on(io, t, got);
  poll(io);
  REQUIRE(got);
  CHECK_FALSE(*got);
  got.reset();
  t.expires_after(1h);
  wait_on(io, t, got);
  poll(io);
  CHECK_FALSE(got);
  t.cancel();
  poll(io);
  REQUIRE(got);
  CHECK(*got == asio::error::operation_aborted);
  // A timer gone before the clock moves: the advance touches nothing of it.
  {
    runtime::timer gone(io, clock);
    gone.expires_after(10ms);
  }
  clock.advance(1s);
  poll(io);
}

TEST_CASE("on the steady clock a timer waits on the kernel") {
  asio::io_context io;
  runtime::timer t(io, common::steady());
  std::optional<error_code> got;
  auto start = common::steady().now();
  t.expires_after(20ms);
  wait_on(io, t, got);
  io.run_for(2s);
  REQUIRE(got);
  CHECK_FALSE(*got);
  CHECK(common::steady().now() - start >= 20ms);
}

TEST_CASE("a watchdog on a manual clock fires when the clock passes its deadline") {
  asio::io_context io;
  common::manual_clock clock;
  int fired = 0;
  runtime::watchdog w(
      io, clock, [](void* n) { ++*static_cast<int*>(n); }, &fired);
  w.set(clock.now() + 5s);
  poll(io);
  clock.advance(4s);
  poll(io);
  CHECK(fired == 0);
  w.set(clock.now() + 2s);  // later: nothing fires at the old time
  clock.advance(1s);
  poll(io);
  CHECK(fired == 0);
  clock.advance(1s);
  poll(io);
  CHECK(fired == 1);
  CHECK(w.expired());
}
