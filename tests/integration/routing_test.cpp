// Latency-aware routing end to end: the real gateway in front of meridian-mock engines whose
// speed and queue change at run time, and test backends whose metrics scrape hangs or is garbage.
#include <doctest/doctest.h>

#include <cstring>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "support/gateway_process.hpp"
#include "support/mock_process.hpp"
#include "support/raw_client.hpp"
#include "support/test_backend.hpp"

using namespace test;
using namespace std::chrono_literals;
using clk = std::chrono::steady_clock;

namespace {
const std::string chat =
    R"({"model":"mock-llm","stream":true,"max_tokens":4,"messages":[{"role":"user","content":"hi"}]})";

std::string inference_config(const std::vector<std::uint16_t>& ports,
                             const std::string& extra = "") {
  std::string y =
      "listeners: [ { name: public, address: 127.0.0.1:0 } ]\nworkers: 1\n"
      "access_log: false\nclusters:\n  - name: llm\n    kind: inference\n"
      "    balancer: latency_aware\n    endpoints:\n";
  for (auto p : ports) y += "      - 127.0.0.1:" + std::to_string(p) + "\n";
  y += "    probe: { path: /health, interval: 100ms, timeout: 80ms }\n"
       "    load_metrics: { path: /metrics, interval: 100ms, timeout: 80ms }\n"
       "    models: { interval: 200ms, timeout: 150ms }\n"
       "    latency: { decay: 1s }\n" +
       extra + "routes: [ { name: all, match: { path_prefix: / }, cluster: llm } ]\n";
  return y;
}

// Waits until every endpoint has been probed healthy and has reported its load.
bool ready(gateway_process& gw, std::size_t endpoints) {
  std::string last;
  bool ok = test_backend::eventually(
      [&] {
        auto r = http_request(gw.admin_port(), "GET", "/admin/endpoints");
        last = r.body;
        std::size_t probed = 0, pos = 0;
        while ((pos = r.body.find("\"kv_cache_usage\":0", pos)) != std::string::npos)
          ++probed, ++pos;
        return probed >= endpoints;
      },
      15000ms);  // returns as soon as they are; slow only under sanitizers on a busy machine
  if (!ok) MESSAGE("not ready: " << last << "\n" << gw.log());
  return ok;
}

struct sample {
  clk::time_point start;
  std::string backend;
  int status;
};

// Client threads sending chat streams back to back, recording when each began and who served it.
class load {
 public:
  load(std::uint16_t port, int threads) {
    for (int t = 0; t < threads; ++t)
      threads_.emplace_back([this, port] {
        // One keep-alive connection per thread, as real clients do (and no ephemeral-port churn).
        const std::string req =
            "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\n"
            "Content-Type: application/json\r\nContent-Length: " +
            std::to_string(chat.size()) + "\r\n\r\n" + chat;
        std::optional<client> c;
        while (!stop_) {
          auto start = clk::now();
          sample s{start, "", 0};
          try {
            if (!c) c.emplace(port);
            c->send(req);
            if (auto r = c->read(10000ms)) {
              s.status = r->status;
              s.backend = r->headers["x-mock-backend"];
            } else {
              c.reset();
            }
          } catch (const std::exception&) {
            c.reset();
          }
          std::lock_guard lock(mu_);
          samples_.push_back(s);
        }
      });
  }
  ~load() {
    stop_ = true;
    for (auto& t : threads_) t.join();
  }
  // Share of the requests begun in [from, to) that went to `backend`, and how many there were.
  std::pair<double, std::size_t> share(const std::string& backend, clk::time_point from,
                                       clk::time_point to) {
    std::lock_guard lock(mu_);
    std::size_t n = 0, hit = 0;
    for (const auto& s : samples_)
      if (s.start >= from && s.start < to) {
        ++n;
        hit += s.backend == backend ? 1 : 0;
      }
    return {n ? static_cast<double>(hit) / static_cast<double>(n) : 0.0, n};
  }
  // Requests begun in [from, to) (all of them by default) that did not end in a whole 200.
  std::size_t failures(clk::time_point from = {}, clk::time_point to = clk::time_point::max()) {
    std::lock_guard lock(mu_);
    std::size_t f = 0;
    for (const auto& s : samples_)
      if (s.start >= from && s.start < to) f += s.status == 200 ? 0 : 1;
    return f;
  }

 private:
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<sample> samples_;
  std::vector<std::thread> threads_;
};
}  // namespace

TEST_CASE("traffic leaves a backend that turns slow within 2 s and comes back once it recovers") {
  mock_process a({"--name", "a", "--decode-ms", "2"}), b({"--name", "b", "--decode-ms", "2"}),
      c({"--name", "c", "--decode-ms", "2"});
  gateway_process gw(inference_config({a.port(), b.port(), c.port()}));
  REQUIRE(ready(gw, 3));
  load l(gw.port(), 6);
  // b has its share while it is fast. Under sanitizers on a busy machine one mock can look slower
  // for a while, so this waits for a second in which b served over a tenth of the traffic.
  bool shared = test_backend::eventually(
      [&] {
        auto s = l.share("b", clk::now() - 1s, clk::now());
        return s.second > 20 && s.first > 0.1;
      },
      10000ms);
  REQUIRE(shared);
  REQUIRE(b.control(R"({"decode_ms":150})"));
  auto turned = clk::now();
  std::this_thread::sleep_for(3s);
  auto after = l.share("b", turned + 2s, turned + 3s);
  CAPTURE(after.second);
  CHECK(after.second > 20);
  CHECK(after.first < 0.05);
  REQUIRE(b.control(R"({"decode_ms":2})"));
  auto recovered = clk::now();
  bool back = test_backend::eventually(
      [&] { return l.share("b", clk::now() - 1s, clk::now()).first > 0.1; }, 10000ms);
  CHECK(back);
  MESSAGE("back after ", std::chrono::duration<double>(clk::now() - recovered).count(), " s");
  CHECK(l.failures() == 0);
}

TEST_CASE("a backend that answers 200 and cuts every stream is ejected, though its probe passes") {
  mock_process good({"--name", "good", "--decode-ms", "2"});
  mock_process cutter({"--name", "cutter", "--decode-ms", "2", "--cut-after", "2"});
  gateway_process gw(inference_config({good.port(), cutter.port()}));
  REQUIRE(ready(gw, 2));
  auto start = clk::now();
  load l(gw.port(), 2);
  std::this_thread::sleep_for(3s);
  auto failed_late = l.failures(start + 1s);
  auto failed = l.failures();
  auto served = l.share("good", start + 1s, clk::now());
  // Five cuts in a row eject it (outlier.consecutive_5xx): the 200 heads before each cut must not
  // start the count over, and the probe it keeps passing must not lift the ejection.
  auto m = metrics_text(gw);
  CHECK(has(m, "meridian_endpoint_ejections_total{cluster=\"llm\",endpoint=\"127.0.0.1:" +
                   std::to_string(cutter.port()) + "\"} 1"));
  CAPTURE(failed);
  CHECK(failed >= 5);
  CHECK(failed <= 8);  // the ones in flight when it was ejected at most
  CHECK(failed_late == 0);
  CHECK(served.second > 20);
  CHECK(served.first == 1.0);
}

TEST_CASE("requests waiting on an endpoint its probes find down end at once: retried, or 503") {
  mock_process a({"--name", "a", "--decode-ms", "2"}), b({"--name", "b", "--decode-ms", "2"});
  const std::string req =
      R"({"model":"mock-llm","max_tokens":4,"messages":[{"role":"user","content":"hi"}]})";
  for (bool retry : {false, true}) {
    CAPTURE(retry);
    auto y = inference_config({a.port(), b.port()});
    y.replace(y.find("latency_aware"), 13, "round_robin");
    if (retry)
      y.replace(y.find("cluster: llm }"), 14,
                "cluster: llm, retries: { on: [connect_failure, reset_before_response] } }");
    gateway_process gw(y);
    REQUIRE(ready(gw, 2));
    // a freezes (a SIGSTOPped engine: health checks unanswered too) for 5 s.
    REQUIRE(a.control(R"({"stall_ms":5000})"));
    auto start = clk::now();
    std::vector<simple_response> got(4);
    std::vector<std::thread> clients;
    for (auto& g : got)  // round robin sends two of them to the frozen a
      clients.emplace_back(
          [&] { g = http_request(gw.port(), "POST", "/v1/chat/completions", req); });
    for (auto& t : clients) t.join();
    auto took = clk::now() - start;
    int ok = 0, down = 0;
    for (const auto& g : got) {
      ok += g.status == 200 && g.backend == "b";
      down += g.status == 503 && has(g.body, "found down by its health probes");
    }
    CHECK(took < 3s);  // the probes' verdict (~0.5 s), not the end of the freeze
    if (retry) {
      CHECK(ok == 4);
    } else {
      CHECK(ok == 2);
      CHECK(down == 2);
    }
    REQUIRE(a.control(R"({"stall_ms":0})"));
  }
}

TEST_CASE("a stream on an endpoint its probes find down ends at once with an SSE error event") {
  mock_process a({"--name", "a", "--decode-ms", "50"});
  gateway_process gw(inference_config({a.port()}));
  REQUIRE(ready(gw, 1));
  const std::string body =
      R"({"model":"mock-llm","stream":true,"max_tokens":200,"messages":[{"role":"user","content":"hi"}]})";
  client c(gw.port());
  c.send(
      "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
      "Content-Length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body);
  std::string got;
  while (got.find("data: {") == std::string::npos) {
    auto more = c.read_some(3000ms);
    REQUIRE_FALSE(more.empty());
    got += more;
  }
  // Frozen mid-answer (health checks unanswered too): the stream ends when the probes say so,
  // not at the idle timeout (120 s), and says why.
  REQUIRE(a.control(R"({"stall_ms":6000})"));
  auto start = clk::now();
  while (got.find("found down by its health probes") == std::string::npos) {
    auto more = c.read_some(4000ms);
    if (more.empty()) break;
    got += more;
  }
  CHECK(has(got, "data: {\"error\":{\"message\":\"upstream was found down by its health probes"));
  CHECK(clk::now() - start < 3s);
  REQUIRE(a.control(R"({"stall_ms":0})"));
}

TEST_CASE(
    "probe RTT is the path's: a busy server's late health checks are its wait, not distance") {
  // busy: next to the gateway, but its /health answers after up to 40 ms (a Python server
  // under load); far: an idle server 15 ms away each way (the harness's delaying relay).
  mock_process busy({"--name", "busy", "--health-delay-ms", "40"});
  mock_process far_server({"--name", "far"});
  mock_process far({"--to", "127.0.0.1:" + std::to_string(far_server.port()), "--delay", "15ms"},
                   "relay");
  gateway_process gw(inference_config({busy.port(), far.port()}));
  REQUIRE(ready(gw, 2));
  auto figure = [](const std::string& text, std::size_t from, const char* key) {
    auto at = text.find(key, from);
    return at == std::string::npos ? -1.0
                                   : std::strtod(text.c_str() + at + std::strlen(key), nullptr);
  };
  double busy_rtt = -1, busy_wait = -1, far_rtt = -1;
  // A dozen probes: the windowed minimum needs one quick answer among them.
  CHECK(test_backend::eventually(
      [&] {
        auto admin = http_request(gw.admin_port(), "GET", "/admin/endpoints").body;
        auto b = admin.find("127.0.0.1:" + std::to_string(busy.port()));
        auto f = admin.find("127.0.0.1:" + std::to_string(far.port()));
        if (b == std::string::npos || f == std::string::npos) return false;
        busy_rtt = figure(admin, b, "\"rtt_ms\":");
        busy_wait = figure(admin, b, "\"wait_ms\":");
        far_rtt = figure(admin, f, "\"rtt_ms\":");
        return busy_rtt >= 0 && busy_rtt < 8 && busy_wait > 4 && far_rtt >= 28;
      },
      8000ms));
  CAPTURE(busy_rtt);
  CAPTURE(busy_wait);
  CAPTURE(far_rtt);
  CHECK(far_rtt < 60);
  auto m = metrics_text(gw);
  CHECK(has(m, "meridian_endpoint_probe_wait_seconds{cluster=\"llm\""));
  CHECK(has(m, "meridian_endpoint_connect_seconds{cluster=\"llm\""));
}

TEST_CASE("an endpoint reporting a deep queue is avoided") {
  mock_process q({"--name", "q", "--slots", "1", "--decode-ms", "20"});
  mock_process f({"--name", "f", "--decode-ms", "2"});
  // Fill q's queue directly, bypassing the gateway: only its /metrics can tell.
  std::vector<std::unique_ptr<client>> held;
  const std::string long_req =
      R"({"model":"mock-llm","max_tokens":500,"messages":[{"role":"user","content":"hi"}]})";
  for (int i = 0; i < 8; ++i) {
    held.push_back(std::make_unique<client>(q.port()));
    held.back()->send(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Type: "
        "application/json\r\nContent-Length: " +
        std::to_string(long_req.size()) + "\r\n\r\n" + long_req);
  }
  gateway_process gw(inference_config({q.port(), f.port()}));
  REQUIRE(test_backend::eventually(
      [&] {
        auto m = http_request(gw.admin_port(), "GET", "/metrics").body;
        auto at = m.find("meridian_endpoint_queue_depth{cluster=\"llm\",endpoint=\"127.0.0.1:" +
                         std::to_string(q.port()) + "\"} ");
        return at != std::string::npos && m[m.find("} ", at) + 2] != '0';
      },
      5000ms));
  std::map<std::string, int> served;
  for (int i = 0; i < 30; ++i) {
    auto r = http_request(gw.port(), "POST", "/v1/chat/completions", chat);
    CHECK(r.status == 200);
    ++served[r.backend];
  }
  CHECK(served["q"] == 0);
  CHECK(served["f"] == 30);
  held.clear();  // the mock stops the abandoned generations
}

TEST_CASE("a burst over equal endpoints does not herd") {
  std::vector<std::unique_ptr<mock_process>> mocks;
  std::vector<std::uint16_t> ports;
  for (const char* n : {"a", "b", "c", "d"}) {
    mocks.push_back(std::make_unique<mock_process>(std::vector<std::string>{"--name", n}));
    ports.push_back(mocks.back()->port());
  }
  gateway_process gw(inference_config(ports));
  REQUIRE(ready(gw, 4));
  std::vector<std::unique_ptr<client>> clients;
  for (int i = 0; i < 100; ++i) {
    clients.push_back(std::make_unique<client>(gw.port()));
    clients.back()->send(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Type: "
        "application/json\r\nContent-Length: " +
        std::to_string(chat.size()) + "\r\n\r\n" + chat);
  }
  std::map<std::string, int> served;
  for (auto& c : clients) {
    auto r = c->read(10000ms);
    REQUIRE(r);
    CHECK(r->status == 200);
    ++served[r->headers["x-mock-backend"]];
  }
  CHECK(served.size() == 4);
  // A herd sends most of the burst to one endpoint; arrival timing on a busy 2-CPU machine leaves
  // an even split uneven (41 of 100 on one was seen), so the bound is twice the fair share.
  for (auto& [name, n] : served) {
    CAPTURE(name);
    CHECK(n <= 25 * 2);
  }
}

TEST_CASE("a metrics scrape that hangs or returns garbage changes nothing for traffic") {
  for (const char* path : {"/hang", "/echo"}) {
    CAPTURE(path);
    test_backend be1, be2;
    std::string y =
        "listeners: [ { name: public, address: 127.0.0.1:0 } ]\nworkers: 1\n"
        "clusters:\n  - name: c\n    balancer: latency_aware\n    endpoints:\n"
        "      - 127.0.0.1:" +
        std::to_string(be1.port()) +
        "\n"
        "      - 127.0.0.1:" +
        std::to_string(be2.port()) +
        "\n"
        "    load_metrics: { path: " +
        path +
        ", interval: 50ms, timeout: 40ms }\n"
        "    probe: { path: /echo, interval: 50ms, timeout: 40ms }\n"
        "routes: [ { name: all, match: { path_prefix: / }, cluster: c } ]\n";
    gateway_process gw(y);
    REQUIRE(test_backend::eventually(
        [&] {
          auto m = http_request(gw.admin_port(), "GET", "/metrics").body;
          return m.find(
                     "meridian_endpoint_scrape_failures_total{cluster=\"c\",endpoint=\"127.0.0.1:" +
                     std::to_string(be1.port()) + "\"} 0") == std::string::npos;
        },
        5000ms));
    for (int i = 0; i < 20; ++i) CHECK(http_request(gw.port(), "GET", "/echo/x").status == 200);
    auto m = http_request(gw.admin_port(), "GET", "/metrics").body;
    CHECK(m.find("meridian_endpoint_healthy{cluster=\"c\",endpoint=\"127.0.0.1:" +
                 std::to_string(be2.port()) + "\"} 1") != std::string::npos);
  }
}

TEST_CASE("/v1/models is the union of the endpoints' models; a request goes where its model is") {
  mock_process alpha({"--name", "alpha", "--model", "alpha"}),
      beta({"--name", "beta", "--model", "beta"});
  gateway_process gw(inference_config({alpha.port(), beta.port()}));
  REQUIRE(test_backend::eventually(
      [&] {
        auto r = http_request(gw.port(), "GET", "/v1/models");
        return r.body.find("\"alpha\"") != std::string::npos &&
               r.body.find("\"beta\"") != std::string::npos;
      },
      5000ms));
  auto list = http_request(gw.port(), "GET", "/v1/models");
  CHECK(list.status == 200);
  CHECK(list.body.find(R"("object":"list")") != std::string::npos);
  const std::string beta_req =
      R"({"model":"beta","max_tokens":2,"messages":[{"role":"user","content":"hi"}]})";
  for (int i = 0; i < 10; ++i) {
    auto r = http_request(gw.port(), "POST", "/v1/chat/completions", beta_req);
    CHECK(r.status == 200);
    CHECK(r.backend == "beta");
  }
  auto missing =
      http_request(gw.port(), "POST", "/v1/chat/completions", R"({"model":"gamma","messages":[]})");
  CHECK(missing.status == 404);
  CHECK(missing.body.find(R"("code":"model_not_found")") != std::string::npos);
  CHECK(missing.body.find(R"("type":"invalid_request_error")") != std::string::npos);
  // models.retrieve: one model, or 404 in OpenAI's shape (not the backend's own 404).
  auto one = http_request(gw.port(), "GET", "/v1/models/beta");
  CHECK(one.status == 200);
  CHECK(one.body.find(R"("id":"beta")") != std::string::npos);
  CHECK(one.body.find(R"("object":"model")") != std::string::npos);
  auto none = http_request(gw.port(), "GET", "/v1/models/gamma");
  CHECK(none.status == 404);
  CHECK(none.body.find(R"("code":"model_not_found")") != std::string::npos);
}

TEST_CASE(
    "prefix affinity: a conversation stays on one engine, conversations spread, sessions pin") {
  std::vector<std::unique_ptr<mock_process>> mocks;
  std::vector<std::uint16_t> ports;
  for (const char* n : {"a", "b", "c", "d"}) {
    // Prefill dominates, as it does for long prompts on a large model: 200 us a token.
    mocks.push_back(std::make_unique<mock_process>(
        std::vector<std::string>{"--name", n, "--prefill-us-per-token", "200"}));
    ports.push_back(mocks.back()->port());
  }
  gateway_process gw(inference_config(
      ports, "    prefix_affinity: { block_bytes: 64, session_header: x-session-id }\n"));
  REQUIRE(ready(gw, 4));
  // A long system prompt (over 16 blocks), then a history that grows by a turn per request.
  auto body = [](int conversation, int turns) {
    std::string b =
        R"({"model":"mock-llm","stream":true,"max_tokens":2,"messages":[{"role":"system","content":")";
    for (int i = 0; i < 200; ++i)
      b += "Rule " + std::to_string(conversation) + "." + std::to_string(i) + ": be precise. ";
    b += R"("})";
    for (int t = 0; t < turns; ++t)
      b += R"(,{"role":"user","content":"turn )" + std::to_string(t) + R"("})";
    return b + "]}";
  };
  std::map<std::string, int> first_of;
  for (int conv = 0; conv < 12; ++conv) {
    std::string where;
    for (int turn = 1; turn <= 4; ++turn) {
      auto r = http_request(gw.port(), "POST", "/v1/chat/completions", body(conv, turn));
      REQUIRE(r.status == 200);
      if (turn == 1) where = r.backend;
      CHECK(r.backend == where);  // every turn of a conversation on the engine that has it
      if (r.backend != where) {
        MESSAGE(http_request(gw.admin_port(), "GET", "/admin/endpoints").body);
        auto mm = http_request(gw.admin_port(), "GET", "/metrics").body;
        MESSAGE(mm.substr(mm.find("meridian_prefix"), 1500));
        REQUIRE(false);
      }
    }
    ++first_of[where];
  }
  CHECK(first_of.size() >= 3);  // twelve conversations do not all share one engine
  // The same session id pins different prompts to one engine.
  std::string pinned;
  for (int i = 0; i < 6; ++i) {
    auto r = http_request(gw.port(), "POST", "/v1/chat/completions", body(100 + i, 1),
                          {{"x-session-id", "user-7"}});
    REQUIRE(r.status == 200);
    if (i == 0) pinned = r.backend;
    CHECK(r.backend == pinned);
  }
  auto m = http_request(gw.admin_port(), "GET", "/metrics").body;
  CHECK(m.find("meridian_prefix_cache_lookups_total{cluster=\"llm\",result=\"hit\"} ") !=
        std::string::npos);
  CHECK(m.find("meridian_prefix_cache_lookups_total{cluster=\"llm\",result=\"hit\"} 0\n") ==
        std::string::npos);
  auto admin = http_request(gw.admin_port(), "GET", "/admin/endpoints").body;
  CHECK(admin.find("\"indexed_blocks\":") != std::string::npos);
}

TEST_CASE("prefix affinity forgets what an engine held once it restarts") {
  mock_process a({"--name", "a", "--prefill-us-per-token", "200"});
  gateway_process gw(inference_config({a.port()}, "    prefix_affinity: { block_bytes: 64 }\n"));
  REQUIRE(ready(gw, 1));
  std::string b =
      R"({"model":"mock-llm","stream":true,"max_tokens":2,"messages":[{"role":"user","content":")";
  for (int k = 0; k < 100; ++k) b += "Fact " + std::to_string(k) + ". ";
  b += R"("}]})";
  REQUIRE(http_request(gw.port(), "POST", "/v1/chat/completions", b).status == 200);
  auto blocks = [&] {
    auto admin = http_request(gw.admin_port(), "GET", "/admin/endpoints").body;
    auto at = admin.find("\"indexed_blocks\":");
    return at == std::string::npos ? -1L : std::strtol(admin.c_str() + at + 17, nullptr, 10);
  };
  REQUIRE(test_backend::eventually([&] { return blocks() > 10; }, 2000ms));
  // A restart: the engine's process start time changes and its cache is empty.
  REQUIRE(a.control(R"({"restart":true})"));
  CHECK(test_backend::eventually([&] { return blocks() == 0; }, 5000ms));
  CHECK(has(gw.log(), "restarted (its process start time changed)"));
}

TEST_CASE("prefix affinity learns prefill from the cached tokens the engine reports") {
  // 200 us a token: 64-byte blocks of 16 tokens cost 3.2 ms each to prefill.
  mock_process m({"--name", "a", "--prefill-us-per-token", "200", "--decode-ms", "1"});
  gateway_process gw(inference_config({m.port()}, "    prefix_affinity: { block_bytes: 64 }\n"));
  REQUIRE(ready(gw, 1));
  auto body = [](int i) {
    std::string b = R"({"model":"mock-llm","stream":true,"stream_options":{"include_usage":true},)"
                    R"("max_tokens":2,"messages":[{"role":"user","content":")";
    for (int k = 0; k < 40 + 30 * (i % 5); ++k) b += "Fact " + std::to_string(i * 100 + k) + ". ";
    return b + R"("}]})";
  };
  // Three prompts in four were already sent to the engine by someone else (another gateway
  // replica): this gateway's index has never seen any of them, the engine holds them.
  for (int i = 0; i < 32; ++i) {
    // Warming the engine directly is set-up, not what is tested: under ASan one such direct
    // request in a few full runs got no answer from the mock in 10 s (not understood yet), so
    // a lost one is sent again once.
    if (i % 4 != 0 && http_request(m.port(), "POST", "/v1/chat/completions", body(i)).status != 200)
      REQUIRE(http_request(m.port(), "POST", "/v1/chat/completions", body(i)).status == 200);
    REQUIRE(http_request(gw.port(), "POST", "/v1/chat/completions", body(i)).status == 200);
  }
  // Taken against the index alone, the warm samples would teach a rate near zero.
  auto admin = http_request(gw.admin_port(), "GET", "/admin/endpoints").body;
  auto at = admin.find("\"prefill_ms_per_block\":");
  REQUIRE(at != std::string::npos);
  CAPTURE(admin.substr(at, 40));
  double rate = std::strtod(admin.c_str() + at + 23, nullptr);
  CAPTURE(admin);
  CHECK(rate > 2.0);
  CHECK(rate < 5.0);
}

TEST_CASE("the access log has the model and the tokens of an inference request") {
  mock_process a({"--name", "a"});
  std::string y = inference_config({a.port()});
  y.replace(y.find("access_log: false\n"), 18, "");
  gateway_process gw(y);
  REQUIRE(ready(gw, 1));
  auto r =
      http_request(gw.port(), "POST", "/v1/chat/completions",
                   R"({"model":"mock-llm","stream":true,"stream_options":{"include_usage":true},)"
                   R"("max_tokens":4,"messages":[{"role":"user","content":"hi"}]})");
  REQUIRE(r.status == 200);
  REQUIRE(test_backend::eventually(
      [&] { return has(gw.access_log(), "\"path\":\"/v1/chat/completions\""); }, 2000ms));
  auto log = gw.access_log();
  auto line = log.substr(log.find("\"path\":\"/v1/chat/completions\""));
  line = line.substr(0, line.find('\n'));
  CHECK(has(line, "\"cluster\":\"llm\""));
  CHECK(has(line, "\"model\":\"mock-llm\""));
  CHECK(has(line, "\"completion_tokens\":4"));
  CHECK_FALSE(has(line, "\"prompt_tokens\":null"));
  CHECK(has(line, "\"flags\":\"-\""));
  // The endpoint's own first-byte histogram counted it.
  CHECK(has(metrics_text(gw),
            "meridian_endpoint_first_byte_seconds_count{cluster=\"llm\",endpoint=\"127.0.0.1:" +
                std::to_string(a.port()) + "\"} 1\n"));
}
