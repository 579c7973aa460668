#include "meridian/runtime/watchdog.hpp"

#include <doctest/doctest.h>

#include <boost/asio/io_context.hpp>

using namespace meridian;
using namespace std::chrono_literals;

namespace {
struct owner {
  int fired = 0;
  common::time_point at{};
  static void on(void* self) {
    auto* o = static_cast<owner*>(self);
    ++o->fired;
    o->at = common::steady().now();
  }
};
}  // namespace

TEST_CASE("a watchdog fires once when its deadline passes") {
  boost::asio::io_context io;
  owner o;
  runtime::watchdog w(io, common::steady(), &owner::on, &o);
  auto start = common::steady().now();
  w.set(start + 20ms);
  io.run_for(2s);
  CHECK(o.fired == 1);
  CHECK(w.expired());
  CHECK(o.at - start >= 20ms);
  w.reset();
  CHECK_FALSE(w.expired());
}

TEST_CASE("moving a deadline later or clearing it does not fire at the old time") {
  boost::asio::io_context io;
  owner o;
  runtime::watchdog w(io, common::steady(), &owner::on, &o);
  auto start = common::steady().now();
  w.set(start + 10ms);
  w.set(start + 60ms);  // later: the timer wakes at 10 ms and sleeps again
  io.run_for(2s);
  CHECK(o.fired == 1);
  CHECK(o.at - start >= 60ms);
  io.restart();
  w.reset();
  w.set(common::steady().now() + 10ms);
  w.clear();
  io.run_for(100ms);
  CHECK(o.fired == 1);
}

TEST_CASE("moving a deadline earlier fires at the earlier time") {
  boost::asio::io_context io;
  owner o;
  runtime::watchdog w(io, common::steady(), &owner::on, &o);
  auto start = common::steady().now();
  w.set(start + 10s);
  w.set(start + 10ms);
  io.run_for(2s);
  CHECK(o.fired == 1);
  CHECK(o.at - start < 5s);
}

TEST_CASE("the owner may go with a wait pending") {
  boost::asio::io_context io;
  owner o;
  {
    runtime::watchdog w(io, common::steady(), &owner::on, &o);
    w.set(common::steady().now() + 10ms);
  }
  io.run_for(200ms);
  CHECK(o.fired == 0);
}
