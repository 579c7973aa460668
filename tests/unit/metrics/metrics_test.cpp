#include "meridian/metrics/metrics.hpp"

#include <doctest/doctest.h>

#include "unit/metrics/sample.hpp"

#include <unistd.h>
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <latch>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>

using namespace meridian;
using test::sample;

namespace {
metrics::layout sample_layout() {
  metrics::layout l;
  l.routes = {"chat", "all"};
  l.route_clusters = {"llama", "c"};
  l.clusters = {"llama", "c"};
  l.endpoints = {{"127.0.0.1:9201", "127.0.0.1:9202"}, {"10.0.0.5:9000"}};
  l.listeners = {"public"};
  return l;
}

// Samples of one family (its own name, or with _bucket/_sum/_count), comments excluded.
int samples_of(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  int n = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(name, 0) != 0 || line.size() == name.size()) continue;
    char next = line[name.size()];
    if (next == '{' || next == ' ') ++n;
  }
  return n;
}

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

auto& code(metrics::route_metrics& rm, int status) {
  return rm.requests[metrics::status_index(status)];
}
}  // namespace

// Worker w's block of the e-th exported endpoint of cluster c.
static metrics::endpoint_metrics& em(metrics::registry& reg, unsigned w, std::size_t c,
                                     std::size_t e) {
  return reg.endpoints()[c][e]->worker(w);
}

TEST_CASE("each worker's block is its own, on its own cache lines") {
  static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
  static_assert(std::atomic<double>::is_always_lock_free);
  static_assert(alignof(metrics::worker_metrics) == metrics::cache_line);
  static_assert(sizeof(metrics::route_metrics) % metrics::cache_line == 0);
  static_assert(sizeof(metrics::endpoint_metrics) % metrics::cache_line == 0);
  static_assert(sizeof(metrics::cluster_metrics) % metrics::cache_line == 0);
  metrics::registry reg(sample_layout(), 2);
  REQUIRE(reg.workers() == 2);
  auto& w0 = reg.worker(0);
  auto& w1 = reg.worker(1);
  CHECK(&w0 != &w1);
  for (auto* w : {&w0, &w1}) {
    CHECK(reinterpret_cast<std::uintptr_t>(w) % metrics::cache_line == 0);
    CHECK(reinterpret_cast<std::uintptr_t>(&w->route(1)) % metrics::cache_line == 0);
    CHECK(reinterpret_cast<std::uintptr_t>(&w->cluster(1)) % metrics::cache_line == 0);
    CHECK(reinterpret_cast<std::uintptr_t>(&em(reg, w->index(), 0, 1)) % metrics::cache_line == 0);
  }
  CHECK(reg.endpoints()[0].size() == 2);
  CHECK(reg.endpoints()[1].size() == 1);
}

TEST_CASE("serialize sums every family over the workers") {
  metrics::registry reg(sample_layout(), 2);
  auto& w0 = reg.worker(0);
  auto& w1 = reg.worker(1);
  code(w0.route(0), 200).inc(3);
  code(w1.route(0), 204).inc(4);
  code(w1.route(0), 0).inc();
  code(w0.unrouted(), 404).inc(2);
  code(w0.unrouted(), 418).inc();
  w0.route(1).cancelled_response.inc();
  w1.route(1).cancelled_request.inc(2);
  w0.cluster(1).connections_reused.inc(3);
  w1.cluster(1).connections_reused.inc(4);
  w0.cluster(0).connections_opened.inc();
  em(reg, 0, 0, 1).requests.inc(5);
  em(reg, 1, 0, 1).requests.inc(6);
  em(reg, 1, 0, 0).errors[static_cast<int>(metrics::upstream_error::connect)].inc();
  w0.accepted_connections().inc(10);
  w1.accepted_connections().inc(20);
  w0.bytes_in().inc(100);
  w1.bytes_in().inc(23);
  w1.bytes_out().inc(7);
  w0.rejected(metrics::reject_reason::header_timeout).inc();
  w1.rejected(metrics::reject_reason::no_route).inc(2);

  auto m = reg.serialize();
  // The exact code, workers summed; a series appears with its first request.
  CHECK(
      sample(
          m,
          R"(meridian_requests_total{cluster="llama",code="200",code_class="2xx",route="chat"})") ==
      3);
  CHECK(
      sample(
          m,
          R"(meridian_requests_total{cluster="llama",code="204",code_class="2xx",route="chat"})") ==
      4);
  CHECK(
      sample(
          m,
          R"(meridian_requests_total{cluster="llama",code="none",code_class="none",route="chat"})") ==
      1);
  CHECK(sample(m, R"(meridian_requests_total{cluster="",code="404",code_class="4xx",route=""})") ==
        2);
  CHECK_FALSE(has(m, R"(meridian_requests_total{cluster="c")"));
  // A status outside the known set counts as other, in its class.
  CHECK(
      sample(m, R"(meridian_requests_total{cluster="",code="other",code_class="4xx",route=""})") ==
      1);
  CHECK(has(m, "meridian_cancelled_requests_total{phase=\"response\",route=\"all\"} 1\n"));
  CHECK(has(m, "meridian_cancelled_requests_total{phase=\"request\",route=\"all\"} 2\n"));
  CHECK(has(m, "meridian_upstream_connections_reused_total{cluster=\"c\"} 7\n"));
  CHECK(sample(m, R"(meridian_upstream_connections_opened_total{cluster="llama"})") == 1);
  CHECK(
      sample(m, R"(meridian_upstream_requests_total{cluster="llama",endpoint="127.0.0.1:9202"})") ==
      11);
  CHECK(
      sample(m, R"(meridian_upstream_requests_total{cluster="llama",endpoint="127.0.0.1:9201"})") ==
      0);
  CHECK(
      sample(
          m,
          R"(meridian_upstream_errors_total{cluster="llama",endpoint="127.0.0.1:9201",kind="connect"})") ==
      1);
  CHECK(has(m, "kind=\"connect\"} 1\n"));
  CHECK(sample(m, "meridian_downstream_connections_total") == 30);
  CHECK(sample(m, R"(meridian_downstream_bytes_total{direction="in"})") == 123);
  CHECK(sample(m, R"(meridian_downstream_bytes_total{direction="out"})") == 7);
  CHECK(has(m, "meridian_downstream_rejected_total{reason=\"header_timeout\"} 1\n"));
  CHECK(sample(m, R"(meridian_downstream_rejected_total{reason="no_route"})") == 2);
  CHECK(reg.endpoint_requests(0, 1) == 11);
  CHECK(reg.endpoint_requests(0, 0) == 0);
  CHECK(reg.endpoint_requests(1, 0) == 0);
}

TEST_CASE("histogram buckets are inclusive upper bounds, with _sum and _count") {
  using h = metrics::histogram;
  static_assert(h::buckets <= 30);
  CHECK(h::bounds.front() == 0.0001);
  CHECK(h::bounds.back() == 300);
  for (std::size_t i = 1; i < h::bounds.size(); ++i) CHECK(h::bounds[i - 1] < h::bounds[i]);
  for (double b : {0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.5, 10.0})
    CHECK(std::find(h::bounds.begin(), h::bounds.end(), b) != h::bounds.end());

  metrics::registry reg(sample_layout(), 2);
  auto& d0 = reg.worker(0).route(0).duration;
  auto& d1 = reg.worker(1).route(0).duration;
  d0.observe(0.1);           // exactly on a bound: counted in le="0.1"
  d1.observe(0.1000001);     // just above: le="0.15"
  d0.observe(0.00005);       // below the lowest bound
  d1.observe(-1);            // a clock step back still lands in the lowest bucket
  d0.observe(300);           // exactly the top bound
  d1.observe(301);           // only +Inf
  d0.observe(std::nan(""));  // ignored
  CHECK(d0.count() == 3);
  CHECK(d0.bucket(h::bounds.size() - 1) == 1);
  CHECK(d1.bucket(h::bounds.size()) == 1);

  auto m = reg.serialize();
  auto bucket = [&](const char* le) {
    return sample(m, std::string("meridian_request_duration_seconds_bucket{route=\"chat\",le=\"") +
                         le + "\"}");
  };
  CHECK(bucket("0.0001") == 2);
  CHECK(bucket("0.05") == 2);
  CHECK(bucket("0.1") == 3);
  CHECK(bucket("0.15") == 4);
  CHECK(bucket("0.3") == 4);
  CHECK(bucket("0.00025") == 2);
  CHECK(bucket("7.5") == 4);
  CHECK(bucket("120") == 4);
  CHECK(bucket("300") == 5);
  CHECK(bucket("+Inf") == 6);
  CHECK(sample(m, R"(meridian_request_duration_seconds_count{route="chat"})") == 6);
  auto sum = sample(m, R"(meridian_request_duration_seconds_sum{route="chat"})");
  REQUIRE(sum);
  CHECK(*sum == doctest::Approx(0.1 + 0.1000001 + 0.00005 - 1 + 300 + 301));
  CHECK(samples_of(m, "meridian_request_duration_seconds_bucket") ==
        3 * static_cast<int>(h::buckets));  // chat, all, unrouted
  CHECK(sample(m, R"(meridian_request_duration_seconds_count{route="all"})") == 0);
}

TEST_CASE("gauges are summed over workers") {
  metrics::registry reg(sample_layout(), 2);
  auto& w0 = reg.worker(0);
  auto& w1 = reg.worker(1);
  auto& e0 = em(reg, 0, 0, 0).in_flight;
  auto& e1 = em(reg, 1, 0, 0).in_flight;
  e0.add(3);
  e1.add();
  e1.add();
  e0.sub();
  CHECK(reg.endpoint_in_flight(0, 0) == 4);
  CHECK(reg.endpoint_in_flight(0, 1) == 0);
  auto m = reg.serialize();
  CHECK(sample(m, R"(meridian_endpoint_inflight{cluster="llama",endpoint="127.0.0.1:9201"})") == 4);
  e0.sub(2);
  e1.sub(2);
  CHECK(reg.endpoint_in_flight(0, 0) == 0);
  CHECK(sample(reg.serialize(),
               R"(meridian_endpoint_inflight{cluster="llama",endpoint="127.0.0.1:9201"})") == 0);

  w0.active_connections().add(2);
  w1.active_connections().set(5);
  w1.active_connections().sub();
  CHECK(sample(reg.serialize(), "meridian_downstream_connections_active") == 6);

  CHECK(sample(reg.serialize(), "meridian_draining") == 0);
  reg.set_draining(true);
  CHECK(sample(reg.serialize(), "meridian_draining") == 1);
  CHECK(sample(reg.serialize(), "meridian_workers") == 2);
}

TEST_CASE("families keep their names, help, types and label sets") {
  metrics::registry reg(sample_layout(), 1);
  auto m = reg.serialize();
  const char* families[][3] = {
      {"meridian_request_duration_seconds", "histogram",
       "Time from a request's first byte to the last byte of its response"},
      {"meridian_cancelled_requests_total", "counter",
       "Requests whose client went away before the response finished"},
      {"meridian_upstream_connect_duration_seconds", "histogram",
       "Time to open a TCP connection to an endpoint"},
      {"meridian_upstream_response_head_seconds", "histogram",
       "Time from the request sent upstream to its response head"},
      {"meridian_upstream_connections_opened_total", "counter", "Upstream connections opened"},
      {"meridian_upstream_connections_reused_total", "counter",
       "Requests sent on a pooled keep-alive upstream connection"},
      {"meridian_upstream_requests_total", "counter", "Requests sent to an endpoint"},
      {"meridian_endpoint_first_byte_seconds", "histogram",
       "Time from the request sent to an endpoint to the first byte of its response body (a "
       "stream's first token)"},
      {"meridian_endpoint_inflight", "gauge",
       "Requests in flight to an endpoint (counted from the pick), all workers"},
      {"meridian_time_to_first_token_seconds", "histogram",
       "Time from a request's first byte to the first SSE data event of its stream"},
      {"meridian_inter_token_latency_seconds", "histogram",
       "Gaps between consecutive SSE data events of a stream"},
      {"meridian_tokens_total", "counter",
       "Tokens reported in the responses' usage, by route, cluster and kind"},
      {"meridian_endpoint_healthy", "gauge", "1 when active probes find the endpoint healthy"},
      {"meridian_routing_decisions_total", "counter",
       "Requests sent to an endpoint, by why it was chosen"},
      {"meridian_upstream_errors_total", "counter", "Upstream failures by kind"},
      {"meridian_downstream_connections_active", "gauge", "Open client connections"},
      {"meridian_downstream_connections_total", "counter", "Client connections accepted"},
      {"meridian_downstream_bytes_total", "counter", "Bytes received from and sent to clients"},
      {"meridian_downstream_rejected_total", "counter",
       "Requests or connections refused by the gateway, by reason"},
      {"meridian_draining", "gauge", "1 while the gateway drains before shutdown"},
      {"meridian_workers", "gauge", "Worker threads serving the data path"},
  };
  for (auto& [name, type, help] : families) {
    CAPTURE(name);
    CHECK(has(m, std::string("# HELP ") + name + " " + help + "\n"));
    CHECK(has(m, std::string("# TYPE ") + name + " " + type + "\n"));
  }
  // No request yet: no status series.
  CHECK(samples_of(m, "meridian_requests_total") == 0);
  CHECK(samples_of(m, "meridian_cancelled_requests_total") == 6);
  CHECK(has(m, "meridian_cancelled_requests_total{phase=\"request\",route=\"\"} 0\n"));
  CHECK(has(m, "meridian_request_duration_seconds_count{route=\"\"} 0\n"));
  CHECK(
      has(m, "meridian_upstream_connect_duration_seconds_bucket{cluster=\"c\",le=\"0.0001\"} 0\n"));
  CHECK(has(m, "meridian_upstream_response_head_seconds_sum{cluster=\"llama\"} 0\n"));
  CHECK(has(m, "meridian_upstream_connections_opened_total{cluster=\"c\"} 0\n"));
  CHECK(samples_of(m, "meridian_upstream_requests_total") == 3);
  CHECK(has(m, "meridian_upstream_requests_total{cluster=\"c\",endpoint=\"10.0.0.5:9000\"} 0\n"));
  CHECK(samples_of(m, "meridian_endpoint_inflight") == 3);
  CHECK(samples_of(m, "meridian_upstream_errors_total") == 12);
  CHECK(samples_of(m, "meridian_routing_decisions_total") == 18);  // 3 endpoints x 6 reasons
  CHECK(samples_of(m, "meridian_endpoint_healthy") == 3);
  // Estimates nobody has made yet are left out rather than shown as 0.
  CHECK(samples_of(m, "meridian_endpoint_score_seconds") == 0);
  CHECK(samples_of(m, "meridian_endpoint_rtt_seconds") == 0);
  for (const char* kind : {"connect", "reset", "timeout", "protocol"})
    CHECK(
        sample(
            m,
            std::string(
                R"(meridian_upstream_errors_total{cluster="llama",endpoint="127.0.0.1:9202",kind=")") +
                kind + "\"}") == 0);
  CHECK(has(m, "meridian_downstream_connections_active 0\n"));
  CHECK(has(m, "meridian_downstream_connections_total 0\n"));
  CHECK(samples_of(m, "meridian_downstream_bytes_total") == 2);
  CHECK(samples_of(m, "meridian_downstream_rejected_total") == 10);
  for (const char* reason : {"bad_request", "head_too_large", "body_too_large", "header_timeout",
                             "body_timeout", "overloaded", "no_route", "unauthenticated",
                             "forbidden", "rate_limited"})
    CHECK(sample(m, std::string(R"(meridian_downstream_rejected_total{reason=")") + reason +
                        "\"}") == 0);
  CHECK(has(m, "meridian_workers 1\n"));

  // The info family appears once the backend is known, with only the latest value.
  CHECK_FALSE(has(m, "meridian_io_backend_info"));
  reg.set_io_backend("io_uring");
  reg.set_io_backend("epoll");
  m = reg.serialize();
  CHECK(has(m, "# HELP meridian_io_backend_info The I/O reactor the data path runs on\n"));
  CHECK(has(m, "# TYPE meridian_io_backend_info gauge\n"));
  CHECK(has(m, "meridian_io_backend_info{backend=\"epoll\"} 1\n"));
  CHECK(samples_of(m, "meridian_io_backend_info") == 1);
}

TEST_CASE("children with equal labels are one series") {
  // A route's name defaults to its cluster's, so two routes to one cluster share labels.
  metrics::layout l;
  l.routes = {"llama", "llama", ""};
  l.route_clusters = {"llama", "llama", "llama"};
  l.clusters = {"llama"};
  l.endpoints = {{"a:1", "a:1"}};
  metrics::registry reg(l, 2);
  code(reg.worker(0).route(0), 200).inc();
  code(reg.worker(1).route(1), 200).inc(2);
  reg.worker(0).route(0).duration.observe(1);
  reg.worker(1).route(1).duration.observe(2);
  reg.worker(0).route(2).duration.observe(3);  // route="" like the unrouted one
  // An endpoint listed twice is one endpoint, exported once.
  REQUIRE(reg.endpoints()[0].size() == 1);
  em(reg, 1, 0, 0).requests.inc();
  em(reg, 0, 0, 0).requests.inc();
  auto m = reg.serialize();
  // (llama, llama) and ("", llama) share their labels: one series.
  CHECK(samples_of(m, "meridian_requests_total") == 1);
  CHECK(
      sample(
          m,
          R"(meridian_requests_total{cluster="llama",code="200",code_class="2xx",route="llama"})") ==
      3);
  CHECK(samples_of(m, "meridian_request_duration_seconds_count") == 2);  // "llama" and ""
  CHECK(sample(m, R"(meridian_request_duration_seconds_count{route="llama"})") == 2);
  CHECK(sample(m, R"(meridian_request_duration_seconds_count{route=""})") == 1);
  CHECK(samples_of(m, "meridian_upstream_requests_total") == 1);
  CHECK(sample(m, R"(meridian_upstream_requests_total{cluster="llama",endpoint="a:1"})") == 2);
  CHECK(reg.endpoint_requests(0, 0) == 2);
}

TEST_CASE("a layout whose lists disagree is refused") {
  metrics::layout l = sample_layout();
  l.route_clusters.pop_back();
  CHECK_THROWS_AS(metrics::registry(l, 1), std::invalid_argument);
  l = sample_layout();
  l.endpoints.pop_back();
  CHECK_THROWS_AS(metrics::registry(l, 1), std::invalid_argument);
  metrics::registry none(metrics::layout{}, 0);
  CHECK(has(none.serialize(), "# TYPE meridian_workers gauge\n"));
  CHECK_FALSE(has(none.serialize(), "meridian_upstream_requests_total"));
}

TEST_CASE("two writers and a scraper: every increment is counted") {
  constexpr std::uint64_t per_worker = 1000000;
  metrics::registry reg(sample_layout(), 2);
  std::latch start(3);
  std::atomic<int> finished{0};
  auto writer = [&](unsigned i) {
    auto& w = reg.worker(i);
    auto& ep = em(reg, i, 0, 0);
    start.arrive_and_wait();
    for (std::uint64_t n = 0; n < per_worker; ++n) {
      w.accepted_connections().inc();
      ep.requests.inc();
      w.route(0).duration.observe(static_cast<double>(n % 7) / 10);
    }
    finished.fetch_add(1);
  };
  std::thread a(writer, 0u), b(writer, 1u);
  double last = 0;
  int scrapes = 0;
  start.arrive_and_wait();
  for (; scrapes < 10000 && finished.load() < 2; ++scrapes) {
    auto m = reg.serialize();
    auto total = sample(m, "meridian_downstream_connections_total");
    REQUIRE(total);
    CHECK(*total >= last);  // each worker's count only grows, so their sum does too
    CHECK(*total <= 2.0 * per_worker);
    last = *total;
    CHECK(sample(m, R"(meridian_request_duration_seconds_count{route="chat"})") ==
          sample(m, R"(meridian_request_duration_seconds_bucket{route="chat",le="+Inf"})"));
  }
  a.join();
  b.join();
  MESSAGE(scrapes << " scrapes while writing");
  auto m = reg.serialize();
  CHECK(sample(m, "meridian_downstream_connections_total") == 2.0 * per_worker);
  CHECK(sample(m, R"(meridian_request_duration_seconds_count{route="chat"})") == 2.0 * per_worker);
  CHECK(reg.endpoint_requests(0, 0) == 2 * per_worker);
}

TEST_CASE("promtool accepts the exposition") {
  if (std::system("command -v promtool >/dev/null 2>&1") != 0) {
    MESSAGE("promtool not installed: skipped (apt-get install prometheus provides it)");
    return;
  }
  metrics::registry reg(sample_layout(), 2);
  code(reg.worker(0).route(0), 200).inc();
  reg.worker(1).route(1).duration.observe(0.3);
  reg.worker(0).cluster(0).first_byte.observe(12);
  em(reg, 1, 0, 1).in_flight.add();
  reg.set_io_backend("epoll");
  reg.set_draining(true);
  char path[] = "/tmp/meridian-metrics-XXXXXX";
  int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  ::close(fd);
  std::ofstream(path) << reg.serialize();
  std::string cmd = std::string("promtool check metrics < ") + path + " 2>&1";
  std::string output;
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p);
  char buf[512];
  while (std::fgets(buf, sizeof buf, p)) output += buf;
  int status = ::pclose(p);
  std::remove(path);
  CAPTURE(output);
  CHECK(status == 0);
  CHECK(output.empty());
}

TEST_CASE(
    "routing inputs: probe figures from the control thread, the highest estimate over workers") {
  metrics::registry reg(sample_layout(), 2);
  reg.signals(0, 0).rtt.set(0.012);
  reg.signals(0, 0).kv_usage.set(0.5);
  reg.signals(0, 0).healthy.set(1);
  em(reg, 0, 0, 0).score.set(0.2);
  em(reg, 1, 0, 0).score.set(0.3);
  em(reg, 1, 0, 0).decisions[static_cast<int>(metrics::decision::retry)].inc();
  reg.worker(0).route(0).ttft.observe(0.05);
  reg.worker(0).route(0).prompt_tokens.inc(12);
  auto m = reg.serialize();
  auto ep = std::string(R"({cluster="llama",endpoint="127.0.0.1:9201"})");
  CHECK(sample(m, "meridian_endpoint_rtt_seconds" + ep) == doctest::Approx(0.012));
  CHECK(sample(m, "meridian_endpoint_kv_cache_usage_ratio" + ep) == doctest::Approx(0.5));
  CHECK(sample(m, "meridian_endpoint_healthy" + ep) == 1);
  CHECK(sample(m, "meridian_endpoint_score_seconds" + ep) == doctest::Approx(0.3));
  CHECK(
      sample(
          m,
          R"(meridian_routing_decisions_total{cluster="llama",endpoint="127.0.0.1:9201",reason="retry"})") ==
      1);
  CHECK(has(m, "meridian_time_to_first_token_seconds_count{"));
  CHECK(has(m, "kind=\"prompt\""));
}

TEST_CASE("endpoints come and go: only the exported set appears, a live series keeps counting") {
  metrics::registry reg(sample_layout(), 2);
  auto first = reg.endpoints();
  REQUIRE(first[0].size() == 2);
  first[0][1]->worker(1).requests.inc(3);
  // 9201 leaves, 9203 joins; 9202 is the same series as before.
  auto stays = reg.endpoint(0, "127.0.0.1:9202");
  CHECK(stays == first[0][1]);
  auto joins = reg.endpoint(0, "127.0.0.1:9203");
  CHECK(joins->workers() == 2);
  joins->worker(0).requests.inc();
  joins->signals().rtt.set(0.004);
  reg.set_endpoints({{joins, stays}, first[1]});
  auto text = reg.serialize();
  CHECK(has(text,
            R"(meridian_upstream_requests_total{cluster="llama",endpoint="127.0.0.1:9202"} 3)"));
  CHECK(has(text,
            R"(meridian_upstream_requests_total{cluster="llama",endpoint="127.0.0.1:9203"} 1)"));
  CHECK(has(text, R"(meridian_endpoint_rtt_seconds{cluster="llama",endpoint="127.0.0.1:9203"})"));
  CHECK_FALSE(has(text, "127.0.0.1:9201"));
  CHECK(reg.endpoint_requests(0, 1) == 3);
  stays->worker(0).ejections.inc();
  CHECK(has(reg.serialize(),
            R"(meridian_endpoint_ejections_total{cluster="llama",endpoint="127.0.0.1:9202"} 1)"));
  // Once nothing holds the series of an endpoint that left, it coming back starts afresh.
  first[0][0]->worker(0).requests.inc(9);
  first.clear();
  CHECK(reg.endpoint(0, "127.0.0.1:9201")->requests() == 0);
  // ... while one still held (a request in flight on it) counts on.
  CHECK(reg.endpoint(0, "127.0.0.1:9202")->requests() == 3);
}
