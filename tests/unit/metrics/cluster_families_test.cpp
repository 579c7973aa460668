// The families by cluster in src/metrics/cluster_families.cpp: prefix affinity, retries and the
// retry budget, interrupted streams, each summed over the workers.
#include <doctest/doctest.h>

#include <optional>
#include <sstream>
#include <string>

#include "meridian/metrics/metrics.hpp"
#include "unit/metrics/sample.hpp"

using namespace meridian;
using test::sample;

namespace {
metrics::layout two_clusters() {
  metrics::layout l;
  l.routes = {"chat"};
  l.route_clusters = {"llama"};
  l.clusters = {"llama", "store"};
  l.endpoints = {{"127.0.0.1:9201"}, {"127.0.0.1:9301"}};
  return l;
}
}  // namespace

TEST_CASE("retries by reason, budget refusals and interrupted streams are summed per cluster") {
  metrics::registry reg(two_clusters(), 2);
  auto retry = [](metrics::cluster_metrics& c, metrics::retry_reason r) -> metrics::counter& {
    return c.retries[static_cast<int>(r)];
  };
  retry(reg.worker(0).cluster(0), metrics::retry_reason::connect_failure).inc(2);
  retry(reg.worker(1).cluster(0), metrics::retry_reason::connect_failure).inc(3);
  retry(reg.worker(1).cluster(0), metrics::retry_reason::status_503).inc();
  reg.worker(0).cluster(0).retry_budget_exhausted.inc(4);
  reg.worker(1)
      .cluster(0)
      .streams_interrupted[static_cast<int>(metrics::interruption::upstream)]
      .inc();
  reg.worker(0)
      .cluster(1)
      .streams_interrupted[static_cast<int>(metrics::interruption::deadline)]
      .inc(2);
  auto m = reg.serialize();
  CHECK(sample(m, R"(meridian_upstream_retries_total{cluster="llama",reason="connect_failure"})") ==
        5);
  CHECK(sample(m, R"(meridian_upstream_retries_total{cluster="llama",reason="503"})") == 1);
  CHECK(sample(
            m,
            R"(meridian_upstream_retries_total{cluster="store",reason="reset_before_response"})") ==
        0);
  CHECK(sample(m, R"(meridian_retry_budget_exhausted_total{cluster="llama"})") == 4);
  CHECK(sample(m, R"(meridian_streams_interrupted_total{cluster="llama",reason="upstream"})") == 1);
  CHECK(sample(m, R"(meridian_streams_interrupted_total{cluster="store",reason="deadline"})") == 2);
}

TEST_CASE("prefix look-ups, matched share and spills are summed per cluster") {
  metrics::registry reg(two_clusters(), 2);
  reg.worker(0).cluster(0).prefix.observe(true, 1.0, 0);
  reg.worker(1).cluster(0).prefix.observe(true, 0.25, 1);
  reg.worker(1).cluster(0).prefix.observe(false, 0.0, 2);
  auto m = reg.serialize();
  CHECK(sample(m, R"(meridian_prefix_cache_lookups_total{cluster="llama",result="hit"})") == 2);
  CHECK(sample(m, R"(meridian_prefix_cache_lookups_total{cluster="llama",result="miss"})") == 1);
  CHECK(sample(m, R"(meridian_prefix_spills_total{cluster="llama",reason="load"})") == 1);
  CHECK(sample(m, R"(meridian_prefix_spills_total{cluster="llama",reason="cost"})") == 1);
  // Buckets are cumulative: 0 falls in le="0", 0.25 in le="0.3", 1 in le="1".
  CHECK(sample(m, R"(meridian_prefix_matched_ratio_bucket{cluster="llama",le="0"})") == 1);
  CHECK(sample(m, R"(meridian_prefix_matched_ratio_bucket{cluster="llama",le="0.3"})") == 2);
  CHECK(sample(m, R"(meridian_prefix_matched_ratio_bucket{cluster="llama",le="1"})") == 3);
  CHECK(sample(m, R"(meridian_prefix_matched_ratio_sum{cluster="llama"})") ==
        doctest::Approx(1.25));
}
