#include "meridian/upstream/cluster.hpp"

#include <doctest/doctest.h>

#include <stdexcept>

using namespace meridian;

TEST_CASE("an endpoint keeps its id for the same cluster and address, across topologies") {
  upstream::identity_table ids;
  auto a = ids.id_for("llama", "127.0.0.1:1");
  auto b = ids.id_for("llama", "127.0.0.1:2");
  auto c = ids.id_for("other", "127.0.0.1:1");
  CHECK(a != b);
  CHECK(a != c);
  CHECK(ids.id_for("llama", "127.0.0.1:1") == a);

  auto cfg1 = config::load_string(R"(
listeners: [ { address: 127.0.0.1:0 } ]
clusters: [ { name: llama, endpoints: [ 127.0.0.1:2, {address: 127.0.0.1:1, zone: edge} ] } ]
routes: [ { match: { path_prefix: / }, cluster: llama } ]
)",
                                  "t");
  auto topo = upstream::resolve_topology(*cfg1, ids);
  REQUIRE(topo->clusters.size() == 1);
  const auto& eps = topo->clusters[0].endpoints;
  CHECK(eps[0].id == b);
  CHECK(eps[1].id == a);
  CHECK(eps[1].zone == "edge");
  CHECK(eps[1].slot == 1);
  CHECK(eps[1].resolved.port() == 1);
}

TEST_CASE("an endpoint that does not resolve is named") {
  upstream::identity_table ids;
  auto cfg = config::load_string(R"(
listeners: [ { address: 127.0.0.1:0 } ]
clusters: [ { name: llama, endpoints: [ "no-such-host.invalid:80" ] } ]
routes: [ { match: { path_prefix: / }, cluster: llama } ]
)",
                                 "t");
  CHECK_THROWS_WITH_AS(upstream::resolve_topology(*cfg, ids),
                       doctest::Contains("no-such-host.invalid:80"), std::runtime_error);
}
