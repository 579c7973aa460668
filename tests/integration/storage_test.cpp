// Storage clusters against the harness's object store (meridian-mock storage): Range and
// conditional requests pass through unchanged, a GET cut mid-body is resumed byte-exact from
// another replica, another version there ends the response abnormally, writes go to one
// endpoint, the bandwidth-aware pick avoids a slow replica, and memory stays flat while a 4 GiB
// object streams to a slow reader.
#include <doctest/doctest.h>

#include <unistd.h>

#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "support/gateway_process.hpp"
#include "support/mock_process.hpp"
#include "support/raw_client.hpp"
#include "support/test_backend.hpp"

using namespace test;
using namespace std::chrono_literals;

namespace {
std::string storage_config(const std::vector<std::uint16_t>& ports, const std::string& cluster = "",
                           const std::string& route = "") {
  std::string y =
      "listeners: [ { name: public, address: 127.0.0.1:0 } ]\nworkers: 1\n"
      "clusters:\n  - name: objects\n    kind: storage\n    endpoints:\n";
  for (auto p : ports) y += "      - 127.0.0.1:" + std::to_string(p) + "\n";
  y += "    probe: { path: /health, interval: 100ms, timeout: 80ms }\n" + cluster;
  y += "routes: [ { name: all, match: { path_prefix: / }, cluster: objects" + route + " } ]\n";
  return y;
}

mock_process store(std::vector<std::string> args) {
  return mock_process(std::move(args), "storage");
}

// One GET on a fresh connection, read until the server closes it: the status, the head's
// Content-Length, and the body bytes that arrived.
struct raw_get {
  int status = 0;
  std::uint64_t content_length = 0;
  std::string body;
};
raw_get get_to_close(std::uint16_t port, const std::string& path, const std::string& headers = "") {
  int fd = connect_to(port);
  send_all(fd, "GET " + path + " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" + headers + "\r\n");
  std::string all = read_until_close(fd, 30000ms);
  ::close(fd);
  raw_get r;
  auto end = all.find("\r\n\r\n");
  if (end == std::string::npos || all.size() < 12) return r;
  r.status = std::stoi(all.substr(9, 3));
  auto head = all.substr(0, end);
  for (char& ch : head) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  auto cl = head.find("content-length: ");
  if (cl != std::string::npos) r.content_length = std::stoull(head.substr(cl + 16));
  r.body = all.substr(end + 4);
  return r;
}

bool healthy(gateway_process& gw, std::size_t n) {
  return test_backend::eventually(
      [&] {
        auto m = metrics_text(gw);
        std::size_t up = 0, pos = 0;
        while ((pos = m.find("meridian_endpoint_healthy{", pos)) != std::string::npos) {
          auto eol = m.find('\n', pos);
          up += m.substr(pos, eol - pos).ends_with(" 1") ? 1 : 0;
          pos = eol;
        }
        return up >= n;
      },
      10000ms);
}

double metric(const std::string& text, const std::string& series) {
  auto at = text.find(series + " ");
  return at == std::string::npos ? -1 : std::stod(text.substr(at + series.size() + 1));
}

std::size_t rss_kib(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line))
    if (line.starts_with("VmRSS:")) return std::stoul(line.substr(6));
  return 0;
}
}  // namespace

TEST_CASE("storage: Range, conditional requests, HEAD, PUT and DELETE pass through unchanged") {
  auto s = store({"--name", "s", "--object", "/obj=300000"});
  gateway_process gw(storage_config({s.port()}));
  REQUIRE(healthy(gw, 1));
  auto direct = get(s.port(), "/obj");
  REQUIRE(direct);
  REQUIRE(direct->body.size() == 300000);
  const std::string etag = direct->headers["etag"];
  REQUIRE(!etag.empty());

  auto r = get(gw.port(), "/obj", "Range: bytes=1000-1999\r\n");
  REQUIRE(r);
  CHECK(r->status == 206);
  CHECK(r->headers["content-range"] == "bytes 1000-1999/300000");
  CHECK(r->body == direct->body.substr(1000, 1000));
  r = get(gw.port(), "/obj", "Range: bytes=-10\r\n");
  REQUIRE(r);
  CHECK(r->status == 206);
  CHECK(r->body == direct->body.substr(299990));
  r = get(gw.port(), "/obj", "Range: bytes=400000-\r\n");
  REQUIRE(r);
  CHECK(r->status == 416);
  CHECK(r->headers["content-range"] == "bytes */300000");
  r = get(gw.port(), "/obj", "If-None-Match: " + etag + "\r\n");
  REQUIRE(r);
  CHECK(r->status == 304);
  CHECK(r->headers["etag"] == etag);
  // If-Range with another version: the whole object, 200.
  r = get(gw.port(), "/obj", "Range: bytes=0-9\r\nIf-Range: \"other\"\r\n");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->body == direct->body);
  r = get(gw.port(), "/obj", "Range: bytes=0-9\r\nIf-Range: " + etag + "\r\n");
  REQUIRE(r);
  CHECK(r->status == 206);
  CHECK(r->body == direct->body.substr(0, 10));

  client hc(gw.port());
  hc.send("HEAD /obj HTTP/1.1\r\nHost: t\r\n\r\n");
  auto head = hc.read(5000ms, true);
  REQUIRE(head);
  CHECK(head->status == 200);
  CHECK(head->headers["content-length"] == "300000");
  CHECK(head->headers["etag"] == etag);
  CHECK(head->body.empty());
  auto put = http_request(gw.port(), "PUT", "/new", std::string(70000, 'x'));
  CHECK(put.status == 200);
  auto back = http_request(gw.port(), "GET", "/new");
  CHECK(back.status == 200);
  CHECK(back.body == std::string(70000, 'x'));
  CHECK(http_request(gw.port(), "DELETE", "/new").status == 204);
  CHECK(http_request(gw.port(), "GET", "/new").status == 404);
}

TEST_CASE("storage: a replica that fails mid-GET is resumed byte-exact from another") {
  // Each replica cuts its first long response (a reset) at a different byte; whichever is tried
  // first, the body is continued on the other, and then on the first again.
  auto a =
      store({"--name", "a", "--object", "/w=16MiB", "--fail-after", "3MiB", "--fail-count", "1"});
  auto b =
      store({"--name", "b", "--object", "/w=16MiB", "--fail-after", "7MiB", "--fail-count", "1"});
  gateway_process gw(storage_config({a.port(), b.port()}, "", ", resume: { attempts: 3 }"));
  REQUIRE(healthy(gw, 2));
  auto through = get_to_close(gw.port(), "/w");
  auto direct = get(a.port(), "/w");
  REQUIRE(direct);
  REQUIRE(direct->body.size() == 16u << 20);
  CHECK(through.status == 200);
  CHECK(through.content_length == 16u << 20);
  CHECK(through.body.size() == direct->body.size());
  CHECK(std::hash<std::string>{}(through.body) == std::hash<std::string>{}(direct->body));
  CHECK(through.body == direct->body);
  auto m = metrics_text(gw);
  CHECK(metric(m, R"(meridian_storage_resumes_total{cluster="objects",result="ok"})") >= 2);
  CHECK(has(gw.log(), "continued it to the end"));
}

TEST_CASE("storage: a replica that stalls mid-GET past the idle timeout is resumed byte-exact") {
  auto a = store({"--name", "a", "--object", "/w=4MiB", "--fail-after", "1MiB", "--fail-mode",
                  "stall", "--fail-count", "1"});
  auto b = store({"--name", "b", "--object", "/w=4MiB", "--fail-after", "2MiB", "--fail-mode",
                  "stall", "--fail-count", "1"});
  gateway_process gw(storage_config({a.port(), b.port()}, "    timeouts: { idle: 300ms }\n",
                                    ", resume: { attempts: 3 }"));
  REQUIRE(healthy(gw, 2));
  auto through = get_to_close(gw.port(), "/w");
  auto direct = get(b.port(), "/w");
  REQUIRE(direct);
  CHECK(through.status == 200);
  CHECK(through.body.size() == direct->body.size());
  CHECK(through.body == direct->body);
}

TEST_CASE("storage: another version on the other replica ends the response abnormally") {
  // Both replicas cut every long GET; they hold different versions (seeds) of the object.
  auto a = store({"--name", "a", "--object", "/w=4MiB", "--fail-after", "1MiB"});
  auto b = store({"--name", "b", "--object", "/w=4MiB", "--seed", "2", "--fail-after", "1MiB"});
  gateway_process gw(storage_config({a.port(), b.port()}));
  REQUIRE(healthy(gw, 2));
  auto through = get_to_close(gw.port(), "/w");
  CHECK(through.status == 200);
  CHECK(through.content_length == 4u << 20);
  // Short of its Content-Length and closed: no client takes it for the whole object.
  CHECK(through.body.size() < through.content_length);
  // The log reaches the test through a pipe another thread reads: wait for the line.
  CHECK(test_backend::eventually([&] { return has(gw.log(), "it holds another version"); },
                                 2000ms));
  auto m = metrics_text(gw);
  CHECK(metric(m, R"(meridian_storage_resumes_total{cluster="objects",result="failed"})") >= 1);
  CHECK(metric(m, R"(meridian_streams_interrupted_total{cluster="objects",reason="upstream"})") ==
        1);
}

TEST_CASE("storage: writes go to the first healthy endpoint and are not retried once sent") {
  auto a = store({"--name", "a"});
  auto b = store({"--name", "b"});
  gateway_process gw(storage_config({a.port(), b.port()}, "    write_to: first_healthy\n"));
  REQUIRE(healthy(gw, 2));
  for (int i = 0; i < 6; ++i) {
    auto r = http_request(gw.port(), "PUT", "/k" + std::to_string(i), "value");
    CHECK(r.status == 200);
    CHECK(r.backend == "a");
  }
  CHECK(http_request(a.port(), "GET", "/k5").body == "value");
  CHECK(http_request(b.port(), "GET", "/k5").status == 404);
}

TEST_CASE("storage: the bandwidth-aware pick sends little to a replica ten times slower") {
  auto f1 = store({"--name", "f1", "--object", "/o=2MiB", "--bandwidth", "200MiB"});
  auto f2 = store({"--name", "f2", "--object", "/o=2MiB", "--bandwidth", "200MiB"});
  auto slow = store({"--name", "slow", "--object", "/o=2MiB", "--bandwidth", "20MiB"});
  gateway_process gw(storage_config({f1.port(), f2.port(), slow.port()}));
  REQUIRE(healthy(gw, 3));
  // Four clients at once, so that transfers share replicas and every replica gets measured.
  std::mutex mu;
  std::map<std::string, int> served;
  int failed = 0;
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t)
    clients.emplace_back([&] {
      for (int i = 0; i < 20; ++i) {
        auto r = http_request(gw.port(), "GET", "/o");
        std::lock_guard lock(mu);
        if (r.status == 200 && r.body.size() == 2u << 20)
          ++served[r.backend];
        else
          ++failed;
      }
    });
  for (auto& c : clients) c.join();
  MESSAGE("f1 ", served["f1"], ", f2 ", served["f2"], ", slow ", served["slow"]);
  CHECK(failed == 0);
  // Round robin would send it a third (27 of 80); it is tried, measured, and then left alone.
  CHECK(served["slow"] <= 8);
  auto m = metrics_text(gw);
  CHECK(has(m, "meridian_endpoint_throughput_bytes_per_second{cluster=\"objects\""));
}

TEST_CASE("storage: memory stays flat while a 4 GiB object streams to a slow reader") {
  auto s = store({"--name", "s", "--object", "/huge=4GiB"});
  gateway_process gw(storage_config({s.port()}));
  REQUIRE(healthy(gw, 1));
  int fd = connect_to(gw.port());
  send_all(fd, "GET /huge HTTP/1.1\r\nHost: t\r\n\r\n");
  // Read a little at a time, pausing between reads, for ~2 s: the gateway must hold back the
  // backend rather than buffer what the client has not taken.
  std::size_t before = rss_kib(gw.pid()), peak = before, got = 0;
  char buf[64 * 1024];
  for (int i = 0; i < 40; ++i) {
    for (int k = 0; k < 8; ++k) {
      auto n = ::read(fd, buf, sizeof buf);
      REQUIRE(n > 0);
      got += static_cast<std::size_t>(n);
    }
    std::this_thread::sleep_for(50ms);  // the slow reader's pace, not a synchronisation
    peak = std::max(peak, rss_kib(gw.pid()));
  }
  ::close(fd);
  MESSAGE("read ", got >> 20, " MiB slowly; gateway RSS ", before, " KiB before, peak ", peak,
          " KiB");
  CHECK(got >= 8u << 20);
  CHECK(peak < before + 16 * 1024);
}

TEST_CASE("storage: a reader slower than min_data_rate is cut and its backend connection freed") {
  auto s = store({"--name", "s", "--object", "/big=64MiB"});
  gateway_process gw(storage_config({s.port()}) +
                     "limits: { min_data_rate: 64KiB }\ntimeouts: { data_rate_window: 1s }\n");
  REQUIRE(healthy(gw, 1));
  const std::string inflight = "meridian_endpoint_inflight{cluster=\"objects\",endpoint=\"127.0.0.1:" +
                               std::to_string(s.port()) + "\"}";
  // A reader that takes nothing (slowhttptest -X's pace is a few bytes a second).
  int fd = connect_to(gw.port(), "127.0.0.2");
  send_all(fd, "GET /big HTTP/1.1\r\nHost: t\r\n\r\n");
  REQUIRE(test_backend::eventually([&] { return metric(metrics_text(gw), inflight) == 1; }, 3000ms));
  auto start = std::chrono::steady_clock::now();
  // Once the kernel's buffers are full the gateway waits on it; past the window it gives up,
  // and the backend connection goes with it.
  CHECK(test_backend::eventually([&] { return metric(metrics_text(gw), inflight) == 0; }, 5000ms));
  CHECK(std::chrono::steady_clock::now() - start < 4s);
  CHECK(wait_closed(fd, 2000ms));
  ::close(fd);
  // A reader that keeps up gets the whole object.
  auto whole = get_to_close(gw.port(), "/big");
  CHECK(whole.status == 200);
  CHECK(whole.body.size() == 64u << 20);
}

namespace {
const std::string stripe_cluster =
    "    stripe: { min_size: 4MiB, part_size: 1MiB, max_parallel: 4 }\n";

// A HEAD through the gateway tells it the object's size (as download tools do first).
void head_first(std::uint16_t port, const std::string& path) {
  client hc(port);
  hc.send("HEAD " + path + " HTTP/1.1\r\nHost: t\r\n\r\n");
  auto r = hc.read(5000ms, true);
  REQUIRE(r);
  REQUIRE(r->status == 200);
}

// A download through the gateway after a HEAD (as download tools do) must equal the object as
// `reference` serves it; returns the gateway's metrics after it.
std::string striped_download(gateway_process& gw, std::uint16_t reference, const std::string& path,
                             std::uint64_t size) {
  head_first(gw.port(), path);
  auto through = get_to_close(gw.port(), path);
  auto direct = get(reference, path);
  REQUIRE(direct);
  REQUIRE(direct->body.size() == size);
  CHECK(through.status == 200);
  CHECK(through.content_length == size);
  CHECK(through.body == direct->body);
  return metrics_text(gw);
}
}  // namespace

TEST_CASE("storage: a striped GET comes from several replicas at once, byte-exact, as one 200") {
  // Each replica capped, so that parts in flight weigh on the pick and spread.
  auto a = store({"--name", "a", "--object", "/w=24MiB", "--bandwidth", "40MiB"});
  auto b = store({"--name", "b", "--object", "/w=24MiB", "--bandwidth", "40MiB"});
  auto c = store({"--name", "c", "--object", "/w=24MiB", "--bandwidth", "40MiB"});
  gateway_process gw(storage_config({a.port(), b.port(), c.port()}, stripe_cluster));
  REQUIRE(healthy(gw, 3));
  auto m = striped_download(gw, a.port(), "/w", 24u << 20);
  CHECK(metric(m, R"(meridian_storage_stripes_total{cluster="objects"})") == 1);
  CHECK(metric(m, R"(meridian_storage_parts_total{cluster="objects",result="ok"})") >= 24);
  // Parts went to more than one replica (which ones is the bandwidth-aware pick's call).
  int used = 0;
  for (auto p : {a.port(), b.port(), c.port()})
    used += metric(m, "meridian_upstream_requests_total{cluster=\"objects\",endpoint=\"127.0.0.1:" +
                          std::to_string(p) + "\"}") >= 3;
  CHECK(used >= 2);
  // A Range request is not striped: it passes through as it is.
  auto ranged = get(gw.port(), "/w", "Range: bytes=100-199\r\n");
  auto direct = get(a.port(), "/w", "Range: bytes=100-199\r\n");
  REQUIRE(ranged);
  REQUIRE(direct);
  CHECK(ranged->status == 206);
  CHECK(ranged->body == direct->body);
  // Nor is a conditional one: the store answers the precondition.
  auto etag = direct->headers["etag"];
  auto unchanged = get(gw.port(), "/w", "If-None-Match: " + etag + "\r\n");
  REQUIRE(unchanged);
  CHECK(unchanged->status == 304);
  CHECK(metric(metrics_text(gw), R"(meridian_storage_stripes_total{cluster="objects"})") == 1);
}

TEST_CASE("storage: a part whose replica fails is fetched again elsewhere") {
  auto a = store({"--name", "a", "--object", "/w=12MiB"});
  auto b = store({"--name", "b", "--object", "/w=12MiB", "--fail-after", "256KiB"});
  gateway_process gw(storage_config({a.port(), b.port()}, stripe_cluster));
  REQUIRE(healthy(gw, 2));
  auto m = striped_download(gw, a.port(), "/w", 12u << 20);
  // b cuts every part it is given; a delivers them instead (or the first part fell back whole).
  CHECK(metric(m, R"(meridian_storage_parts_total{cluster="objects",result="failed"})") >= 1);
}

TEST_CASE("storage: a part lagging on a slow replica is asked of another one too") {
  auto fast = store({"--name", "fast", "--object", "/w=16MiB"});
  auto slow = store({"--name", "slow", "--object", "/w=16MiB", "--bandwidth", "1MiB"});
  gateway_process gw(storage_config({fast.port(), slow.port()}, stripe_cluster));
  REQUIRE(healthy(gw, 2));
  auto m = striped_download(gw, fast.port(), "/w", 16u << 20);
  CHECK(metric(m, R"(meridian_storage_parts_total{cluster="objects",result="reissued"})") >= 1);
}

TEST_CASE("storage: a cold object's first GET, with no HEAD before it, is striped") {
  auto a = store({"--name", "a", "--object", "/w=24MiB", "--bandwidth", "40MiB"});
  auto b = store({"--name", "b", "--object", "/w=24MiB", "--bandwidth", "40MiB"});
  auto c = store({"--name", "c", "--object", "/w=24MiB", "--bandwidth", "40MiB"});
  gateway_process gw(storage_config({a.port(), b.port(), c.port()}, stripe_cluster));
  REQUIRE(healthy(gw, 3));
  auto through = get_to_close(gw.port(), "/w");
  auto direct = get(a.port(), "/w");
  REQUIRE(direct);
  CHECK(through.status == 200);
  CHECK(through.content_length == 24u << 20);
  CHECK(through.body == direct->body);
  auto m = metrics_text(gw);
  CHECK(metric(m, R"(meridian_storage_stripes_total{cluster="objects"})") == 1);
  int used = 0;
  for (auto p : {a.port(), b.port(), c.port()})
    used += metric(m, "meridian_upstream_requests_total{cluster=\"objects\",endpoint=\"127.0.0.1:" +
                          std::to_string(p) + "\"}") >= 3;
  CHECK(used >= 2);
}

TEST_CASE("storage: a cold object found smaller than min_size is fetched in two ranges, unstriped") {
  auto a = store({"--name", "a", "--object", "/s=3MiB"});
  auto b = store({"--name", "b", "--object", "/s=3MiB"});
  gateway_process gw(storage_config({a.port(), b.port()}, stripe_cluster));
  REQUIRE(healthy(gw, 2));
  auto through = get_to_close(gw.port(), "/s");
  auto direct = get(a.port(), "/s");
  REQUIRE(direct);
  CHECK(through.status == 200);
  CHECK(through.body == direct->body);
  auto m = metrics_text(gw);
  CHECK(metric(m, R"(meridian_storage_stripes_total{cluster="objects"})") == 0);
  CHECK(metric(m, R"(meridian_storage_parts_total{cluster="objects",result="ok"})") == 2);
  // Now known to be small: the next GET goes through whole, as one request.
  auto again = get_to_close(gw.port(), "/s");
  CHECK(again.body == direct->body);
  CHECK(metric(metrics_text(gw), R"(meridian_storage_parts_total{cluster="objects",result="ok"})") == 2);
}

TEST_CASE("storage: a store that ignores Range answers a cold GET once, relayed as it is") {
  test_backend plain;  // answers 200 "hello" whatever the Range
  gateway_process gw(storage_config({plain.port()}, stripe_cluster));
  auto r = get(gw.port(), "/obj");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->body == "hello");
  // The object's requests only (the health probe asks this backend for /health every 100 ms).
  std::vector<received> reqs;
  for (auto& q : plain.requests())
    if (q.head.rfind("GET /obj ", 0) == 0) reqs.push_back(q);
  REQUIRE(reqs.size() == 1);  // no second, unranged GET
  CHECK(reqs[0].head.find("bytes=0-1048575") != std::string::npos);
  CHECK(metric(metrics_text(gw), R"(meridian_storage_stripes_total{cluster="objects"})") == 0);
}
