// Endpoints that come and go while traffic flows: reloads that add and remove them, and
// hostnames re-resolved from a hosts file (a resolver the test controls). Nothing in flight or
// arriving may fail.
#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "support/gateway_process.hpp"
#include "support/raw_client.hpp"
#include "support/test_backend.hpp"

using namespace test;
using namespace std::chrono_literals;

namespace {
// Keep-alive clients sending GET /x back to back until finished; every answer that is not a 200
// (or no answer) is a failure, with what it was.
class steady_load {
 public:
  steady_load(std::uint16_t port, int clients) {
    for (int i = 0; i < clients; ++i) threads_.emplace_back([this, port] { run(port); });
  }
  ~steady_load() { finish(); }
  void finish() {
    stop_ = true;
    for (auto& t : threads_)
      if (t.joinable()) t.join();
  }
  int ok() const { return ok_; }
  std::vector<std::string> failures() {
    std::lock_guard lock(mu_);
    return failures_;
  }

 private:
  void run(std::uint16_t port) {
    std::optional<client> c;
    while (!stop_) {
      std::optional<response> r;
      try {
        if (!c) c.emplace(port);
        c->send("GET /x HTTP/1.1\r\nHost: t\r\n\r\n");
        r = c->read(5000ms);
      } catch (const std::exception&) {
      }
      if (r && r->status == 200) {
        ++ok_;
        if (r->headers["connection"] == "close") c.reset();
        continue;
      }
      std::lock_guard lock(mu_);
      failures_.push_back(r ? std::to_string(r->status) + " " + r->body : "no answer");
      c.reset();
    }
  }
  std::atomic<bool> stop_{false};
  std::atomic<int> ok_{0};
  std::mutex mu_;
  std::vector<std::string> failures_;
  std::vector<std::thread> threads_;
};

int reload(const gateway_process& gw) {
  client admin(gw.admin_port());
  admin.send("POST /admin/reload HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
  auto r = admin.read();
  return r ? r->status : 0;
}

std::string label(std::uint16_t port, const char* address = "127.0.0.1") {
  return std::string("endpoint=\"") + address + ":" + std::to_string(port) + "\"";
}

// Reads a stream until it has delivered event `i`; false if it ends or stalls first.
bool stream_reaches(client& c, int i) {
  std::string seen;
  auto want = "data: {\"i\":" + std::to_string(i) + "}";
  while (!has(seen, want)) {
    auto more = c.read_some(2000ms);
    if (more.empty()) return false;
    seen += more;
  }
  return true;
}
}  // namespace

TEST_CASE("reloads that add and remove endpoints under load drop nothing") {
  test_backend a, b, c;
  using set = std::vector<test_backend*>;
  auto config_of = [](const set& s) {
    std::vector<std::uint16_t> ports;
    for (auto* be : s) ports.push_back(be->port());
    return simple_config(ports);
  };
  gateway_process gw(config_of({&a, &b}));
  // A stream that starts on one of the first endpoints and outlives its removal.
  client stream(gw.port());
  stream.send("GET /slow-sse HTTP/1.1\r\nHost: t\r\n\r\n");
  REQUIRE(stream_reaches(stream, 1));
  steady_load load(gw.port(), 3);
  const std::vector<set> rounds{{&b, &c}, {&c}, {&a, &c}, {&a, &b, &c}, {&b}, {&a, &b}};
  for (int round = 0; round < 12; ++round) {
    const auto& s = rounds[static_cast<std::size_t>(round) % rounds.size()];
    gw.rewrite_config(config_of(s));
    std::vector<std::size_t> before;
    for (auto* be : s) before.push_back(be->requests().size());
    REQUIRE(reload(gw) == 200);
    // Every endpoint of the new set takes traffic at once.
    for (std::size_t i = 0; i < s.size(); ++i)
      CHECK(test_backend::eventually([&] { return s[i]->requests().size() > before[i] + 2; },
                                     3000ms));
  }
  // The last set is {a, b}: c, gone since round 4, gets nothing new.
  auto c_before = c.requests().size();
  auto a_before = a.requests().size();
  CHECK(test_backend::eventually([&] { return a.requests().size() > a_before + 50; }, 5000ms));
  CHECK(c.requests().size() == c_before);
  load.finish();
  CHECK(load.failures().empty());
  for (const auto& f : load.failures()) MESSAGE(f);
  CHECK(load.ok() > 100);
  CHECK(stream_reaches(stream, 12));  // its endpoint was removed and re-added meanwhile
  auto m = metrics_text(gw);
  CHECK(has(m, "meridian_config_reloads_total{result=\"success\"} 12"));
  CHECK(has(m, label(a.port())));
  CHECK(has(m, label(b.port())));
  CHECK_FALSE(has(m, label(c.port())));
  auto eps = get(gw.admin_port(), "/admin/endpoints");
  REQUIRE(eps);
  CHECK(has(eps->body, "127.0.0.1:" + std::to_string(a.port())));
  CHECK_FALSE(has(eps->body, "127.0.0.1:" + std::to_string(c.port())));
}

namespace {
struct hosts_file {
  std::string path = "/tmp/meridian-hosts-it-" + std::to_string(::getpid());
  explicit hosts_file(const std::string& text) { write(text); }
  ~hosts_file() { std::remove(path.c_str()); }
  // Replaced whole (rename), as a resolver's file is: a reader never sees half of it.
  void write(const std::string& text) {
    std::ofstream(path + ".new") << text;
    std::rename((path + ".new").c_str(), path.c_str());
  }
};
}  // namespace

TEST_CASE("DNS: a hostname's endpoints follow its addresses under load, and survive an outage") {
  // Three backends behind one name and port, on three loopback addresses.
  test_backend first("127.0.0.1", 0);
  auto port = first.port();
  test_backend second("127.0.0.2", port), third("127.0.0.3", port);
  REQUIRE(second.listening());
  REQUIRE(third.listening());
  hosts_file hosts("127.0.0.1 engine.test\n127.0.0.2 engine.test\n");
  auto yaml = simple_config({}, "dns: { refresh: 200ms, hosts_file: " + hosts.path + " }\n");
  yaml.insert(yaml.find("endpoints:\n") + 11, "      - engine.test:" + std::to_string(port) + "\n");
  gateway_process gw(yaml);
  steady_load load(gw.port(), 3);
  CHECK(test_backend::eventually([&] { return second.requests().size() > 5; }, 3000ms));
  CHECK(first.requests().size() > 0);
  CHECK(third.requests().empty());

  // The name moves: .1 goes, .3 comes.
  hosts.write("127.0.0.2 engine.test\n127.0.0.3 engine.test\n");
  CHECK(test_backend::eventually([&] { return third.requests().size() > 5; }, 3000ms));
  auto was = first.requests().size();
  auto other = third.requests().size();
  CHECK(test_backend::eventually([&] { return third.requests().size() > other + 20; }, 3000ms));
  CHECK(first.requests().size() == was);

  // The name stops resolving: its last addresses stay, and the gateway says so.
  hosts.write("# nothing\n");
  CHECK(test_backend::eventually([&] { return has(gw.log(), "does not resolve now"); }, 3000ms));
  auto served = third.requests().size();
  CHECK(test_backend::eventually([&] { return third.requests().size() > served + 20; }, 3000ms));
  load.finish();
  CHECK(load.failures().empty());
  for (const auto& f : load.failures()) MESSAGE(f);
  auto m = metrics_text(gw);
  CHECK(has(m, label(port, "127.0.0.3")));
  CHECK_FALSE(has(m, label(port, "127.0.0.1")));
}

TEST_CASE("DNS: a name that does not resolve at start is a warning, and joins once it does") {
  test_backend literal, later("127.0.0.4", 0);
  REQUIRE(later.listening());
  hosts_file hosts("# empty for now\n");
  auto yaml =
      simple_config({literal.port()}, "dns: { refresh: 200ms, hosts_file: " + hosts.path + " }\n");
  yaml.insert(yaml.find("endpoints:\n") + 11,
              "      - later.test:" + std::to_string(later.port()) + "\n");
  gateway_process gw(yaml);
  CHECK(has(gw.log(), "'later.test' does not resolve"));
  REQUIRE(get(gw.port(), "/x"));
  CHECK(get(gw.port(), "/x")->status == 200);
  hosts.write("127.0.0.4 later.test\n");
  CHECK(test_backend::eventually(
      [&] {
        auto r = get(gw.port(), "/x");
        return r && r->status == 200 && !later.requests().empty();
      },
      3000ms));
  // The gateway logged it before it routed there; the log reaches the test through a pipe that
  // another thread reads, so it may arrive a moment later.
  CHECK(test_backend::eventually(
      [&] { return has(gw.log(), "'later.test' now has 1 address(es)"); }, 3000ms));
}
