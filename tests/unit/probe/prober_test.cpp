// The prober against a scripted loopback backend: health/RTT probes, load scrapes and model
// discovery, each observed through the snapshots it publishes and the metrics it writes.
#include "meridian/probe/prober.hpp"

#include <doctest/doctest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "meridian/common/log.hpp"

using namespace meridian;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// What the backend does for one path: send `reply` and close, or hold the connection silently
// until the client gives up.
struct answer {
  std::string reply;
  bool hang = false;
};

// The backend's behaviour, changed by the test between phases (same thread as the server).
struct script {
  std::map<std::string, answer> by_path;
  std::map<std::string, int> hits;  // requests seen per path
  int hanging = 0;                  // connections held open right now
};

std::string reply(int status, std::string_view body, std::string_view type = "text/plain") {
  return common::cat("HTTP/1.1 ", status, " X\r\nContent-Type: ", type,
                     "\r\nContent-Length: ", body.size(), "\r\n\r\n", body);
}

asio::awaitable<void> serve_connection(tcp::socket s, script* sc) {
  std::string buf;
  while (buf.find("\r\n\r\n") == std::string::npos) {
    char tmp[1024];
    auto [ec, n] = co_await s.async_read_some(asio::buffer(tmp), use_tuple);
    if (ec) co_return;
    buf.append(tmp, n);
  }
  auto sp1 = buf.find(' ');
  auto sp2 = buf.find(' ', sp1 + 1);
  std::string path = buf.substr(sp1 + 1, sp2 - sp1 - 1);
  ++sc->hits[path];
  auto it = sc->by_path.find(path);
  answer a = it != sc->by_path.end() ? it->second : answer{reply(404, "")};
  if (a.hang) {
    ++sc->hanging;
    char c;
    co_await s.async_read_some(asio::buffer(&c, 1), use_tuple);  // ends when the client closes
    --sc->hanging;
    co_return;
  }
  co_await asio::async_write(s, asio::buffer(a.reply), use_tuple);
}

asio::awaitable<void> accept_loop(tcp::acceptor* acc, script* sc) {
  while (true) {
    auto [ec, s] = co_await acc->async_accept(use_tuple);
    if (ec) co_return;
    asio::co_spawn(acc->get_executor(), serve_connection(std::move(s), sc), asio::detached);
  }
}

// A port nothing listens on: bound, then closed again.
unsigned short dead_port() {
  asio::io_context io;
  tcp::acceptor a(io, {asio::ip::make_address("127.0.0.1"), 0});
  return a.local_endpoint().port();
}

metrics::layout layout_of(std::size_t endpoints) {
  metrics::layout l;
  l.clusters = {"c"};
  l.endpoints.emplace_back();
  for (std::size_t i = 0; i < endpoints; ++i) l.endpoints[0].push_back(common::cat("e", i));
  return l;
}

// Every loop off; each test turns on what it exercises.
config::cluster_config quiet() {
  config::cluster_config cc;
  cc.name = "c";
  cc.probe.interval = 20ms;
  cc.probe.timeout = 20ms;
  cc.probe.rise = 2;
  cc.probe.fall = 3;
  cc.load_metrics.interval = 20ms;
  cc.load_metrics.timeout = 20ms;
  cc.models.interval = 20ms;
  cc.models.timeout = 20ms;
  return cc;
}

// One publish as the test saw it, with what endpoint 0's metrics and errors said right then.
struct record {
  std::shared_ptr<const upstream::signals> snap;
  std::uint64_t probe_failures = 0;
  std::string probe_error;
  const upstream::probe_signals& ep(std::size_t e = 0) const { return snap->clusters[0][e]; }
};

struct rig {
  script sc;
  metrics::registry reg;
  asio::io_context io{1};
  tcp::acceptor acc{io, {asio::ip::make_address("127.0.0.1"), 0}};
  std::vector<record> records;
  std::shared_ptr<const config::gateway_config> cfg;
  std::shared_ptr<const upstream::topology> topo;
  std::unique_ptr<probe::prober> prober;

  // One cluster whose endpoints listen on `ports`; 0 stands for this rig's own server.
  explicit rig(config::cluster_config cc, std::vector<unsigned short> ports = {0})
      : reg(layout_of(ports.size()), 1) {
    auto topo = std::make_shared<upstream::topology>();
    auto& ci = topo->clusters.emplace_back();
    ci.name = cc.name;
    ci.pool = cc.pool;
    ci.latency = cc.latency;
    ci.outlier = cc.outlier;
    for (std::size_t i = 0; i < ports.size(); ++i) {
      auto port = ports[i] != 0 ? ports[i] : acc.local_endpoint().port();
      upstream::endpoint_info e;
      e.id = static_cast<upstream::endpoint_id>(i + 1);
      e.address = "127.0.0.1:" + std::to_string(port);
      e.resolved = {asio::ip::make_address("127.0.0.1"), port};
      e.series = reg.endpoint(0, e.address);
      ci.endpoints.push_back(e);
      cc.endpoints.push_back({{"127.0.0.1", port}, ""});
    }
    reg.set_endpoints(upstream::series_of(*topo));
    auto cfg = std::make_shared<config::gateway_config>();
    cfg->clusters.push_back(std::move(cc));
    this->cfg = cfg;
    this->topo = topo;
    prober = std::make_unique<probe::prober>(
        io, cfg, topo, reg,
        [this](std::shared_ptr<const upstream::signals> s) {
          records.push_back(
              {std::move(s), reg.signals(0, 0).probe_failures.value(), prober->errors(0, 0).probe});
        },
        42);
    asio::co_spawn(io, accept_loop(&acc, &sc), asio::detached);
  }

  const upstream::probe_signals& now(std::size_t e = 0) const {
    return prober->current()->clusters[0][e];
  }
  const probe::endpoint_errors& errors(std::size_t e = 0) const { return prober->errors(0, e); }
  metrics::endpoint_signal_metrics& gauges(std::size_t e = 0) { return reg.signals(0, e); }

  // Runs the loops until `done()` holds; false if it still does not after `bound` (a broken
  // test), which is far beyond what any condition here needs.
  template <class Pred>
  bool run_until(Pred done, std::chrono::steady_clock::duration bound = 5s) {
    auto deadline = std::chrono::steady_clock::now() + bound;
    while (!done()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      if (io.stopped()) io.restart();
      io.run_one_for(50ms);
    }
    return true;
  }
};

// Replays rise/fall over the published history of endpoint 0 (probes only, so each publish is
// exactly one probe result) and checks every published verdict against it.
struct verdict_model {
  unsigned rise, fall;
  bool healthy = true;
  unsigned ok_run = 0, fail_run = 0;
  std::uint64_t successes = 0, failures = 0;
  // Whether the history reached these states: one failure short of `fall` while still healthy,
  // one success short of `rise` while still unhealthy.
  bool held_healthy = false, held_unhealthy = false;

  void replay(const std::vector<record>& rs) {
    for (const auto& r : rs) {
      auto ds = r.ep().successes - successes;
      auto df = r.probe_failures - failures;
      REQUIRE(ds + df == 1);
      successes = r.ep().successes;
      failures = r.probe_failures;
      if (ds == 1) {
        fail_run = 0;
        if (++ok_run >= rise) healthy = true;
      } else {
        ok_run = 0;
        if (++fail_run >= fall) healthy = false;
      }
      CHECK(r.ep().healthy == healthy);
      if (healthy && fail_run == fall - 1) held_healthy = true;
      if (!healthy && ok_run == rise - 1) held_unhealthy = true;
    }
  }
};
}  // namespace

TEST_CASE("prober: a healthy endpoint is published probed, healthy and with its RTT") {
  auto cc = quiet();
  cc.probe.enabled = true;
  cc.probe.path = "/ready";
  rig r(cc);
  r.sc.by_path["/ready"] = {reply(200, "ok")};
  CHECK(r.gauges().healthy.value() == 1);  // healthy until a probe says otherwise
  CHECK_FALSE(r.now().probed);
  r.prober->start();
  REQUIRE(r.run_until([&] { return r.now().successes >= 2; }));
  const auto& s = r.now();
  CHECK(s.probed);
  CHECK(s.healthy);
  CHECK(s.rtt >= 0);
  CHECK(s.rtt < 5);
  CHECK(s.wait >= 0);
  CHECK(s.wait < 5);
  CHECK(s.connect >= 0);
  CHECK(s.probed_at != common::time_point{});
  CHECK(r.sc.hits["/ready"] >= 2);
  CHECK(r.sc.hits.count("/health") == 0);   // the configured path, not the default
  CHECK(r.sc.hits.count("/metrics") == 0);  // disabled loops never run
  CHECK(r.sc.hits.count("/v1/models") == 0);
  CHECK(r.gauges().rtt.get() >= 0);  // NaN (never set) fails this too
  CHECK(r.gauges().healthy.value() == 1);
  CHECK(r.gauges().probe_failures.value() == 0);
  CHECK(r.errors().probe == "");
  CHECK_FALSE(s.load_known);
  CHECK(s.models == nullptr);
  REQUIRE_FALSE(r.records.empty());
  CHECK(r.records.back().snap == r.prober->current());
}

TEST_CASE("prober: health turns only after fall failures and back after rise successes") {
  auto cc = quiet();
  cc.probe.enabled = true;
  rig r(cc);
  r.sc.by_path["/health"] = {reply(200, "ok")};
  r.prober->start();
  REQUIRE(r.run_until([&] { return r.now().successes >= 3; }));
  CHECK(r.now().healthy);

  r.sc.by_path["/health"] = {reply(503, "busy")};
  REQUIRE(r.run_until([&] { return !r.now().healthy; }));
  CHECK(r.gauges().healthy.value() == 0);
  CHECK(r.gauges().probe_failures.value() >= 3);
  CHECK(r.errors().probe == "status 503");
  CHECK(r.now().probed);
  CHECK(r.now().rtt >= 0);  // an error status still measured the path

  auto failures = r.gauges().probe_failures.value();
  r.sc.by_path["/health"] = {reply(200, "ok")};
  REQUIRE(r.run_until([&] { return r.now().healthy; }));
  CHECK(r.gauges().healthy.value() == 1);
  CHECK(r.errors().probe == "");
  CHECK(r.gauges().probe_failures.value() == failures);

  verdict_model m{cc.probe.rise, cc.probe.fall};
  m.replay(r.records);
  CHECK(m.held_healthy);    // fall - 1 failures in a row left it healthy
  CHECK(m.held_unhealthy);  // rise - 1 successes in a row left it unhealthy
  CHECK(m.healthy);
  bool saw_503 = false;
  for (const auto& rec : r.records) saw_503 = saw_503 || rec.probe_error == "status 503";
  CHECK(saw_503);
}

TEST_CASE("prober: an endpoint that refuses connections goes unhealthy after fall probes") {
  auto cc = quiet();
  cc.probe.enabled = true;
  rig r(cc, {dead_port(), 0});
  r.sc.by_path["/health"] = {reply(200, "ok")};
  r.prober->start();
  REQUIRE(r.run_until([&] { return !r.now(0).healthy && r.now(1).successes >= 3; }));
  CHECK(r.errors(0).probe == "connect refused");
  CHECK(r.gauges(0).probe_failures.value() >= 3);
  CHECK(r.gauges(0).healthy.value() == 0);
  CHECK(r.now(0).probed);
  CHECK(r.now(0).successes == 0);
  CHECK(r.now(0).connect == -1);  // never connected
  CHECK(r.now(0).rtt == -1);      // a refusal measures nothing
  // The other endpoint is probed on its own.
  CHECK(r.now(1).healthy);
  CHECK(r.errors(1).probe == "");
  CHECK(r.gauges(1).healthy.value() == 1);
  CHECK(r.gauges(1).probe_failures.value() == 0);
  // Endpoint 0 only ever failed: every publish says healthy until the fall-th failure.
  bool held = false;
  for (const auto& rec : r.records) {
    CHECK(rec.ep(0).healthy == (rec.probe_failures < cc.probe.fall));
    held = held || (rec.probe_failures == cc.probe.fall - 1 && rec.ep(0).healthy);
  }
  CHECK(held);
}

TEST_CASE("prober: a vLLM load scrape is published, kept through failures, and never blocks") {
  auto cc = quiet();
  cc.probe.enabled = true;
  cc.load_metrics.enabled = true;
  // Long enough that one hanging scrape spans several probes.
  cc.load_metrics.interval = 200ms;
  cc.load_metrics.timeout = 200ms;
  rig r(cc);
  r.sc.by_path["/health"] = {reply(200, "ok")};
  r.sc.by_path["/metrics"] = {reply(200,
                                    "# HELP vllm:num_requests_waiting Requests waiting.\n"
                                    "# TYPE vllm:num_requests_waiting gauge\n"
                                    "vllm:num_requests_waiting{model_name=\"m\"} 7.0\n"
                                    "# TYPE vllm:num_requests_running gauge\n"
                                    "vllm:num_requests_running{model_name=\"m\"} 3.0\n"
                                    "# TYPE vllm:kv_cache_usage_perc gauge\n"
                                    "vllm:kv_cache_usage_perc{model_name=\"m\"} 0.42\n",
                                    "text/plain; version=0.0.4")};
  r.prober->start();
  REQUIRE(r.run_until([&] { return r.now().load_known; }));
  {
    const auto& s = r.now();
    CHECK_FALSE(s.scrape_failed);
    CHECK(s.waiting == 7);
    CHECK(s.running == 3);
    CHECK(s.kv_usage == doctest::Approx(0.42));
    CHECK(s.scraped_at != common::time_point{});
    CHECK(r.gauges().queue_depth.get() == 7);
    CHECK(r.gauges().running.get() == 3);
    CHECK(r.gauges().kv_usage.get() == doctest::Approx(0.42));
    CHECK(r.gauges().scrape_failures.value() == 0);
    CHECK(r.errors().scrape == "");
  }

  SUBCASE("a page that is not metrics fails the scrape and keeps the last reading") {
    r.sc.by_path["/metrics"] = {reply(200, "<html><body>It works!</body></html>", "text/html")};
    REQUIRE(r.run_until([&] { return r.now().scrape_failed; }));
    const auto& s = r.now();
    CHECK(s.load_known);
    CHECK(s.waiting == 7);
    CHECK(s.running == 3);
    CHECK(s.kv_usage == doctest::Approx(0.42));
    CHECK(r.gauges().scrape_failures.value() > 0);
    CHECK(r.gauges().queue_depth.get() == 7);
    CHECK(r.errors().scrape == "no load metric found in the response");

    // A good scrape clears the failure.
    r.sc.by_path["/metrics"] = {reply(200, "vllm:num_requests_waiting 1\n")};
    REQUIRE(r.run_until([&] { return !r.now().scrape_failed; }));
    CHECK(r.now().waiting == 1);
    CHECK(r.now().running == -1);  // not exported any more
    CHECK(r.errors().scrape == "");
  }

  SUBCASE("a changed process start time is a restart") {
    auto page = [](const char* start) {
      return reply(200, std::string("process_start_time_seconds ") + start +
                            "\nvllm:num_requests_running 1\n");
    };
    r.sc.by_path["/metrics"] = {page("1000")};
    REQUIRE(r.run_until([&] { return r.now().started == 1000; }));
    CHECK(r.now().restarts == 0);
    r.sc.by_path["/metrics"] = {page("2000")};
    REQUIRE(r.run_until([&] { return r.now().started == 2000; }));
    CHECK(r.now().restarts == 1);
    // The same start time again is no restart.
    auto at = r.now().scraped_at;
    REQUIRE(r.run_until([&] { return r.now().scraped_at != at; }));
    CHECK(r.now().restarts == 1);
  }

  SUBCASE("an error status fails the scrape") {
    r.sc.by_path["/metrics"] = {reply(500, "oops")};
    REQUIRE(r.run_until([&] { return r.now().scrape_failed; }));
    CHECK(r.now().waiting == 7);
    CHECK(r.errors().scrape == "status 500");
  }

  SUBCASE("a scrape that hangs times out while the probes go on") {
    r.sc.by_path["/metrics"] = {"", true};
    REQUIRE(r.run_until([&] { return r.sc.hanging > 0; }));
    auto before = r.now().successes;
    REQUIRE(r.run_until([&] { return r.now().scrape_failed; }));
    CHECK(r.errors().scrape == "timed out waiting for the response");
    CHECK(r.now().successes >= before + 3);  // ~10 probe intervals fit in one scrape timeout
    CHECK(r.now().healthy);
    CHECK(r.now().waiting == 7);
    CHECK(r.gauges().scrape_failures.value() > 0);
  }
}

TEST_CASE("prober: discovered models are published sorted and kept when listing fails") {
  auto cc = quiet();
  cc.models.enabled = true;
  rig r(cc);
  r.sc.by_path["/v1/models"] = {
      reply(200, R"({"object":"list","data":[{"id":"b"},{"id":"a"}]})", "application/json")};
  r.prober->start();
  REQUIRE(r.run_until([&] { return r.now().models != nullptr; }));
  CHECK(*r.now().models == std::vector<std::string>{"a", "b"});
  CHECK(r.errors().models == "");
  CHECK_FALSE(r.now().probed);  // the probe loop is off

  r.sc.by_path["/v1/models"] = {reply(500, "down")};
  auto publishes = r.records.size();
  REQUIRE(r.run_until([&] { return !r.errors().models.empty(); }));
  CHECK(r.errors().models == "status 500 or not a model list");
  REQUIRE(r.now().models != nullptr);
  CHECK(*r.now().models == std::vector<std::string>{"a", "b"});
  CHECK(r.records.size() == publishes);  // nothing changed, nothing published

  r.sc.by_path["/v1/models"] = {reply(200, R"({"data":"nope"})", "application/json")};
  auto hits = r.sc.hits["/v1/models"];
  REQUIRE(r.run_until([&] { return r.sc.hits["/v1/models"] >= hits + 2; }));
  CHECK(r.errors().models == "status 200 or not a model list");
  CHECK(*r.now().models == std::vector<std::string>{"a", "b"});

  r.sc.by_path["/v1/models"] = {
      reply(200, R"({"data":[{"id":"c"},{"id":"a"},{"id":"c"}]})", "application/json")};
  REQUIRE(r.run_until([&] {
    return r.now().models->size() != 2 || r.now().models->front() != "a" ||
           r.now().models->back() != "b";
  }));
  CHECK(*r.now().models == std::vector<std::string>{"a", "c"});
  CHECK(r.errors().models == "");
}

TEST_CASE("prober: after stop() nothing is published and the loops end") {
  auto cc = quiet();
  cc.probe.enabled = true;
  cc.load_metrics.enabled = true;
  cc.models.enabled = true;
  rig r(cc);
  r.sc.by_path["/health"] = {reply(200, "ok")};
  r.sc.by_path["/metrics"] = {reply(200, "vllm:num_requests_waiting 2\n")};
  r.sc.by_path["/v1/models"] = {reply(200, R"({"data":[{"id":"m"}]})")};
  r.prober->start();
  REQUIRE(r.run_until(
      [&] { return r.records.size() >= 3 && r.now().load_known && r.now().models != nullptr; }));

  SUBCASE("stop()") {
    r.prober->stop();
  }
  SUBCASE("destroying the prober") {
    r.prober.reset();
  }
  auto published = r.records.size();
  r.acc.close();  // the server's accept loop ends too; open exchanges end at the probe timeouts
  auto start = std::chrono::steady_clock::now();
  CHECK(r.run_until([&] { return r.io.stopped(); }));
  CHECK(std::chrono::steady_clock::now() - start < 2s);
  CHECK(r.records.size() == published);
}

TEST_CASE("prober: a new topology probes new endpoints, keeps what it knew, stops the ones gone") {
  auto cc = quiet();
  cc.probe.enabled = true;
  cc.probe.path = "/ready";
  rig r(cc);
  r.sc.by_path["/ready"] = {reply(200, "ok")};
  r.prober->start();
  REQUIRE(r.run_until([&] { return r.now().successes >= 2; }));
  // A port nothing listens on.
  unsigned short dead;
  {
    tcp::acceptor a(r.io, {asio::ip::make_address("127.0.0.1"), 0});
    dead = a.local_endpoint().port();
  }
  auto with = [&](bool keep_first) {
    auto t = std::make_shared<upstream::topology>(*r.topo);
    auto& eps = t->clusters[0].endpoints;
    upstream::endpoint_info e;
    e.id = 2;
    e.address = "127.0.0.1:" + std::to_string(dead);
    e.resolved = {asio::ip::make_address("127.0.0.1"), dead};
    e.series = r.reg.endpoint(0, e.address);
    eps.insert(eps.begin(), e);
    if (!keep_first) eps.pop_back();
    return t;
  };
  auto t2 = with(true);
  r.prober->set_topology(r.cfg, t2);
  auto cur = r.prober->current();
  CHECK(cur->topo == t2);
  REQUIRE(cur->clusters[0].size() == 2);
  CHECK_FALSE(cur->clusters[0][0].probed);  // new: healthy until probes say otherwise
  CHECK(cur->clusters[0][0].healthy);
  CHECK(cur->clusters[0][1].successes >= 2);  // kept
  CHECK(t2->clusters[0].endpoints[0].series->signals().healthy.value() == 1);
  REQUIRE(r.run_until([&] { return !r.now(0).healthy; }));  // the new one is probed: dead
  CHECK(r.errors(0).probe != "");
  CHECK(r.now(1).healthy);

  // The live endpoint leaves: it is not probed any more.
  r.prober->set_topology(r.cfg, with(false));
  REQUIRE(r.prober->current()->clusters[0].size() == 1);
  auto hits = r.sc.hits["/ready"];
  auto& still = t2->clusters[0].endpoints[0].series->signals();
  auto fails = still.probe_failures.value();
  REQUIRE(r.run_until([&] { return still.probe_failures.value() >= fails + 5; }));
  CHECK(r.sc.hits["/ready"] <= hits + 1);  // at most the probe already in flight
}
