#include "meridian/proxy/snapshot.hpp"

#include <doctest/doctest.h>

using namespace meridian;

TEST_CASE("a config's metrics layout names its routes, clusters, endpoints and listeners") {
  auto cfg = config::load_string(R"(
listeners: [ { name: pub, address: 127.0.0.1:0 } ]
clusters:
  - { name: a, endpoints: [ 127.0.0.1:1, 127.0.0.1:2 ] }
  - { name: b, endpoints: [ 127.0.0.1:3 ] }
routes:
  - { name: r1, match: { path_prefix: /a }, cluster: a }
  - { match: { path_prefix: / }, cluster: b }
)",
                                 "t");
  auto l = proxy::metrics_layout(*cfg);
  CHECK(l.routes.size() == 2);
  CHECK(l.routes[0] == "r1");
  CHECK(l.route_clusters == std::vector<std::string>{"a", "b"});
  CHECK(l.clusters == std::vector<std::string>{"a", "b"});
  CHECK(l.endpoints[0] == std::vector<std::string>{"127.0.0.1:1", "127.0.0.1:2"});
  CHECK(l.listeners == std::vector<std::string>{"pub"});
  upstream::identity_table ids;
  metrics::registry reg(l, 1);
  proxy::snapshot s(cfg, upstream::resolve_topology(*cfg, ids, reg));
  CHECK(s.routes.size() == 2);
  CHECK(s.topo->clusters[1].endpoints[0].address == "127.0.0.1:3");
}
