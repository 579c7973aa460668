#include <doctest/doctest.h>
#include <unistd.h>

#include "load/report.hpp"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "load/load.hpp"
#include "load/slo.hpp"
#include "mock/mock.hpp"

using namespace meridian::loadtest;

namespace {
int run_cli(std::vector<std::string> args) {
  args.insert(args.begin(), "meridian-load");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  return load_main(static_cast<int>(argv.size()), argv.data());
}
}  // namespace

TEST_CASE("SLO lists parse into metrics, statistics and thresholds") {
  std::string err;
  auto s = parse_slos(
      "e2el_p99<=50ms, ttft_p99<=200ms,error_rate<=0.1%,goodput>=10,tpot_mean<1.5ms,itl_p999<=1s",
      err);
  REQUIRE(s);
  REQUIRE(s->size() == 6);
  CHECK((*s)[0].metric == slo_metric::e2el);
  CHECK((*s)[0].stat == slo_stat::p99);
  CHECK((*s)[0].threshold == doctest::Approx(50));
  CHECK((*s)[2].metric == slo_metric::error_rate);
  CHECK((*s)[2].threshold == doctest::Approx(0.001));
  CHECK((*s)[3].op == slo_op::ge);
  CHECK((*s)[4].op == slo_op::lt);
  CHECK((*s)[4].threshold == doctest::Approx(1.5));
  CHECK((*s)[5].threshold == doctest::Approx(1000));
  CHECK((*s)[0].holds(50));
  CHECK_FALSE((*s)[4].holds(1.5));
  auto pr = per_request_thresholds(*s);
  CHECK(pr.e2el_ns == 50'000'000);
  CHECK(pr.ttft_ns == 200'000'000);
  CHECK(pr.tpot_ns == 1'500'000);
}

TEST_CASE("malformed SLOs are rejected with a message") {
  for (const char* bad : {"e2el_p99", "e2el_p42<=5ms", "latency<=5ms", "e2el_p99<=fast",
                          "error_rate<=x%", "ttft<=5ms"}) {
    std::string err;
    CHECK_MESSAGE(!parse_slos(bad, err), bad);
    CHECK(!err.empty());
  }
}

TEST_CASE("meridian-load exit codes: 2 for bad usage, 0 when SLOs hold, 3 when one is missed") {
  CHECK(run_cli({"--help"}) == exit_ok);
  CHECK(run_cli({"--url", "http://127.0.0.1:1/", "--duration", "1s"}) == exit_usage);  // no rate
  CHECK(run_cli({"--url", "http://127.0.0.1:1/", "--rate", "10", "--slo", "p99<=5"}) == exit_usage);
  CHECK(run_cli({"--url", "http://10.1.2.3:80/", "--rate", "10"}) == exit_usage);  // not loopback
  CHECK(run_cli({"--url", "http://127.0.0.1:1/", "--rate", "10", "--bogus"}) == exit_usage);
  CHECK(run_cli({"--url", "http://127.0.0.1:1/", "--rate", "ten"}) == exit_usage);

  llm_options o;
  o.listen = "127.0.0.1:0";
  llm_mock m(o);
  const auto port = m.start();
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/static";
  CHECK(run_cli({"--url", url, "--rate", "200", "--duration", "0.5s", "--connections", "4",
                 "--quiet", "--slo", "e2el_p99<=500ms,error_rate<=1%"}) == exit_ok);
  CHECK(run_cli({"--url", url, "--rate", "200", "--duration", "0.5s", "--connections", "4",
                 "--quiet", "--slo", "e2el_p50<=1us"}) == exit_slo_missed);
  CHECK(run_cli({"--url", url, "--rate", "200", "--duration", "0.5s", "--connections", "4",
                 "--quiet", "--slo", "request_throughput>=100000"}) == exit_slo_missed);
  // Every request fails against a closed port: 4, with an SLO or without one.
  CHECK(run_cli({"--url", "http://127.0.0.1:1/", "--rate", "50", "--duration", "0.3s",
                 "--connections", "2", "--quiet", "--slo", "error_rate<=1%"}) == exit_all_failed);
  CHECK(run_cli({"--url", "http://127.0.0.1:1/", "--rate", "50", "--duration", "0.3s",
                 "--connections", "2", "--quiet"}) == exit_all_failed);
  CHECK(run_cli({"--version"}) == exit_ok);
}

TEST_CASE("figures carry their units and the run ends with one verdict line") {
  CHECK(with_unit(slo_metric::ttft, 1170) == "1170.0 ms");
  CHECK(with_unit(slo_metric::error_rate, 0.006656) == "0.666%");
  CHECK(with_unit(slo_metric::goodput, 29.3) == "29.30 req/s");
  run_summary s;
  s.completed = 0;
  s.failed = 5;
  CHECK(verdict(s) == "verdict: FAIL, every request failed (5 of 5)");
  s.completed = 95;
  CHECK(verdict(s) == "verdict: DONE, no SLO given; 95 of 100 requests succeeded");
  s.slo_results.push_back({"ttft_p99<=300ms", 1170, false, slo_metric::ttft});
  s.slo_pass = false;
  CHECK(verdict(s) ==
        "verdict: FAIL, SLO missed: ttft_p99<=300ms (observed 1170.0 ms); 95 of 100 requests "
        "succeeded");
  s.slo_results[0] = {"ttft_p99<=300ms", 120, true, slo_metric::ttft};
  s.slo_pass = true;
  CHECK(verdict(s) == "verdict: PASS, all 1 SLOs met; 95 of 100 requests succeeded");
}

TEST_CASE("a remote target needs --allow-remote; --header must be a header") {
  load_config c;
  c.url = "http://10.1.2.3:80/";
  c.rate = 1;
  CHECK(c.finalize().find("add --allow-remote") != std::string::npos);
  c.allow_remote = true;
  CHECK(c.finalize().empty());
  c.headers = {"Authorization Bearer x"};
  CHECK(c.finalize().find("--header wants") != std::string::npos);
  c.headers = {"Authorization: Bearer x\r\nX-Evil: 1"};
  CHECK(c.finalize().find("--header wants") != std::string::npos);
  c.headers = {"Authorization: Bearer sk-1"};
  CHECK(c.finalize().empty());
}

// The HTML report as a browser shows it: headless Chromium loads it, logs no console error,
// and its DOM holds the charts (with the SLO lines), the errors table and the run details.
TEST_CASE("the HTML report renders in headless Chromium with its charts") {
  if (std::system("command -v chromium >/dev/null 2>&1") != 0) {
    MESSAGE("chromium not installed: skipped (apt-get install chromium provides it)");
    return;
  }
  llm_options o;
  o.listen = "127.0.0.1:0";
  llm_mock m(o);
  const auto port = m.start();
  const std::string html = "/tmp/meridian-load-report-test-" + std::to_string(::getpid()) + ".html";
  CHECK(run_cli({"--url", "http://127.0.0.1:" + std::to_string(port) + "/v1/chat/completions",
                 "--openai", "chat", "--stream", "--rate", "40", "--duration", "1s", "--quiet",
                 "--slo", "ttft_p99<=10s,e2el_p99<=10s", "--html", html}) == exit_ok);
  const std::string dom = html + ".dom", err = dom + ".err";
  std::string cmd =
      "timeout 60 chromium --headless --no-sandbox --disable-gpu "
      "--enable-logging=stderr --v=0 --dump-dom file://" +
      html + " > " + dom + " 2> " + err;
  REQUIRE(std::system(cmd.c_str()) == 0);
  auto read = [](const std::string& p) {
    std::ifstream in(p);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  };
  auto count = [](const std::string& text, const std::string& what) {
    std::size_t n = 0;
    for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
  };
  auto page = read(dom), log = read(err);
  CAPTURE(log);
  CHECK(count(log, "CONSOLE") == 0);  // Chromium logs every console message this way
  CHECK(count(page, "<svg") >= 5);    // latency, first token, throughput, tokens, distribution
  CHECK(count(page, "<polyline") >= 8);
  CHECK(count(page, "class=\"slo\"") >= 3);
  CHECK(page.find("verdict: PASS") != std::string::npos);
  CHECK(page.find("<h2>Errors</h2>") != std::string::npos);
  CHECK(page.find("<h2>Run details</h2>") != std::string::npos);
  std::remove(html.c_str());
  std::remove(dom.c_str());
  std::remove(err.c_str());
}
