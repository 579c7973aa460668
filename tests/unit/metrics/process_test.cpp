// process_* and meridian_build_info (src/metrics/process.cpp), read from /proc at scrape time.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <sstream>
#include <string>

#include "meridian/metrics/metrics.hpp"
#include "unit/metrics/sample.hpp"

using namespace meridian;
using test::sample;

namespace {
metrics::layout one_cluster() {
  metrics::layout l;
  l.routes = {"r"};
  l.route_clusters = {"c"};
  l.clusters = {"c"};
  l.endpoints = {{"127.0.0.1:9"}};
  return l;
}
}  // namespace

TEST_CASE("process metrics describe this process; build info names the version") {
  metrics::registry reg(one_cluster(), 1);
  auto m = reg.serialize();
  CHECK(m.find("meridian_build_info") == std::string::npos);  // no version set
  reg.set_version("1.2.3");
  int before_fds = static_cast<int>(*sample(reg.serialize(), "process_open_fds"));
  int extra = ::open("/dev/null", O_RDONLY);
  m = reg.serialize();
  CHECK(sample(m, R"(meridian_build_info{version="1.2.3"})") == 1);
  CHECK(sample(m, "process_open_fds") == before_fds + 1);
  ::close(extra);
  CHECK(*sample(m, "process_cpu_seconds_total") >= 0);
  CHECK(*sample(m, "process_resident_memory_bytes") > 1024 * 1024);
  CHECK(*sample(m, "process_virtual_memory_bytes") >= *sample(m, "process_resident_memory_bytes"));
  CHECK(*sample(m, "process_max_fds") >= 64);
  double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  double start = *sample(m, "process_start_time_seconds");
  CHECK(start <= now + 2);
  CHECK(start > now - 24 * 3600);  // the test binary started today
  CHECK(m.find("# TYPE process_cpu_seconds_total counter") != std::string::npos);
}
