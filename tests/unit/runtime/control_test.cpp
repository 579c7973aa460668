#include "meridian/runtime/control.hpp"

#include <doctest/doctest.h>

#include <boost/asio/post.hpp>

#include <string>
#include <vector>

using namespace meridian;
using namespace std::chrono_literals;

namespace {
struct recorder {
  std::vector<std::string> events;
  std::size_t open = 2;
  runtime::drain_hooks hooks() {
    runtime::drain_hooks h;
    h.on_draining = [this](bool on) { events.push_back(on ? "draining" : "ready"); };
    h.stop_accepting = [this] { events.push_back("stop_accepting"); };
    h.drain_workers = [this] { events.push_back("drain_workers"); };
    h.open_connections = [this] {
      if (open > 0) --open;  // connections finish while the control thread polls
      return open;
    };
    h.abort_all = [this] { events.push_back("abort_all"); };
    return h;
  }
};
}  // namespace

TEST_CASE("a drain fails readiness, stops accepting after the delay, waits, then stops") {
  recorder r;
  runtime::control c({10ms, 5s}, r.hooks());
  bool stopped = false;
  c.on_stop([&] { stopped = true; });
  CHECK_FALSE(c.draining());
  boost::asio::post(c.io(), [&] {
    c.begin_drain();
    c.begin_drain();  // a second request changes nothing
  });
  c.run();
  CHECK(c.draining());
  CHECK(stopped);
  CHECK(r.events ==
        std::vector<std::string>{"draining", "stop_accepting", "drain_workers", "abort_all"});
  CHECK(r.open == 0);
}

TEST_CASE("a drain that times out closes what is left") {
  recorder r;
  r.open = 1000000;  // never finishes by itself
  runtime::control c({1ms, 50ms}, r.hooks());
  auto start = std::chrono::steady_clock::now();
  boost::asio::post(c.io(), [&] { c.begin_drain(); });
  c.run();
  CHECK(std::chrono::steady_clock::now() - start < 5s);
  CHECK(r.events.back() == "abort_all");
  CHECK(r.open > 0);
}

TEST_CASE("a drain of readiness alone can be undone; a stop cannot") {
  recorder r;
  runtime::control c({10ms, 5s}, r.hooks());
  bool first = false, second = true;
  boost::asio::post(c.io(), [&] {
    c.fail_readiness();
    CHECK(c.draining());
    first = c.restore_readiness();  // a mistaken POST /admin/drain, undone
    CHECK_FALSE(c.draining());
    c.begin_drain();
    second = c.restore_readiness();  // stopping: stays drained
    CHECK(c.draining());
  });
  c.run();
  CHECK(first);
  CHECK_FALSE(second);
  CHECK(r.events.size() >= 3);
  CHECK(r.events[0] == "draining");
  CHECK(r.events[1] == "ready");
  CHECK(r.events[2] == "draining");
}
