#include "meridian/upstream/cluster.hpp"

#include <doctest/doctest.h>
#include <unistd.h>

#include <fstream>

using namespace meridian;

namespace {
metrics::registry registry_for(const config::gateway_config& cfg) {
  metrics::layout l;
  for (const auto& c : cfg.clusters) {
    l.clusters.push_back(c.name);
    l.endpoints.emplace_back();
  }
  return metrics::registry(l, 2);
}

// A hosts file in the test's temporary directory, removed with it.
struct hosts_file {
  std::string path = "/tmp/meridian-hosts-" + std::to_string(::getpid());
  explicit hosts_file(const std::string& text) { write(text); }
  ~hosts_file() { std::remove(path.c_str()); }
  void write(const std::string& text) { std::ofstream(path) << text; }
};
}  // namespace

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
  auto reg = registry_for(*cfg1);
  auto topo = upstream::resolve_topology(*cfg1, ids, reg);
  REQUIRE(topo->clusters.size() == 1);
  const auto& eps = topo->clusters[0].endpoints;
  REQUIRE(eps.size() == 2);
  CHECK(eps[0].id == b);
  CHECK(eps[1].id == a);
  CHECK(eps[1].zone == "edge");
  CHECK(eps[1].host.empty());
  CHECK(eps[1].resolved.port() == 1);
  // Each endpoint's metrics series, one block per worker, and the same series again for the
  // same address while it lives.
  REQUIRE(eps[1].series);
  CHECK(eps[1].series->address() == "127.0.0.1:1");
  CHECK(eps[1].series->workers() == 2);
  CHECK(reg.endpoint(0, "127.0.0.1:1") == eps[1].series);
}

TEST_CASE("every address of a hostname is an endpoint; one that does not resolve adds none") {
  hosts_file hosts(
      "# model servers\n"
      "10.0.0.2 engine.svc engine\n"
      "10.0.0.1   engine.svc  # the first pod\n"
      "::1 engine.svc\n"
      "not-an-address engine.svc\n"
      "10.0.0.9 other.svc\n");
  auto cfg = config::load_string(R"(
listeners: [ { address: 127.0.0.1:0 } ]
dns: { hosts_file: )" + hosts.path + R"( }
clusters:
  - name: llama
    endpoints: [ "engine.svc:8000", "10.0.0.1:8000", "gone.svc:8000" ]
routes: [ { match: { path_prefix: / }, cluster: llama } ]
)",
                                 "t");
  upstream::identity_table ids;
  auto reg = registry_for(*cfg);
  CHECK(upstream::hostnames(*cfg) == std::vector<std::string>{"engine.svc", "gone.svc"});
  auto names = upstream::resolve_names(*cfg);
  CHECK(names["engine.svc"].addresses.size() == 3);
  CHECK(names["gone.svc"].error.find("not in hosts file") != std::string::npos);
  auto topo = upstream::build_topology(*cfg, names, ids, reg);
  const auto& eps = topo->clusters[0].endpoints;
  // Sorted within a name; the literal 10.0.0.1:8000 is the same endpoint as engine.svc's first.
  REQUIRE(eps.size() == 3);
  CHECK(eps[0].address == "10.0.0.1:8000");
  CHECK(eps[1].address == "10.0.0.2:8000");
  CHECK(eps[2].address == "[::1]:8000");
  CHECK(eps[0].host == "engine.svc");
  CHECK(eps[2].resolved.address().is_v6());

  // The name loses a pod and gains one: the endpoints that stay keep their ids.
  hosts.write("10.0.0.2 engine.svc\n10.0.0.3 engine.svc\n");
  auto again = upstream::build_topology(*cfg, upstream::resolve_names(*cfg), ids, reg);
  const auto& now = again->clusters[0].endpoints;
  REQUIRE(now.size() == 3);  // 10.0.0.1 (the literal), .2 and .3
  CHECK(now[0].address == "10.0.0.2:8000");
  CHECK(now[0].id == eps[1].id);
  CHECK(now[1].address == "10.0.0.3:8000");
  CHECK(now[2].address == "10.0.0.1:8000");
  CHECK(now[2].id == eps[0].id);
}

TEST_CASE("a hosts file that cannot be read is an error for every name") {
  auto r = upstream::lookup_hosts_file("/nonexistent/hosts", "engine");
  CHECK(r.addresses.empty());
  CHECK(r.error.find("cannot read") != std::string::npos);
}

TEST_CASE("a hostname that does not resolve is not fatal: the cluster starts without it") {
  upstream::identity_table ids;
  auto cfg = config::load_string(R"(
listeners: [ { address: 127.0.0.1:0 } ]
clusters: [ { name: llama, endpoints: [ "no-such-host.invalid:80", 127.0.0.1:9 ] } ]
routes: [ { match: { path_prefix: / }, cluster: llama } ]
)",
                                 "t");
  auto reg = registry_for(*cfg);
  auto topo = upstream::resolve_topology(*cfg, ids, reg);
  REQUIRE(topo->clusters[0].endpoints.size() == 1);
  CHECK(topo->clusters[0].endpoints[0].address == "127.0.0.1:9");
}

TEST_CASE("series_of lists each cluster's endpoint series in topology order") {
  auto cfg = config::load_string(R"(
listeners: [ { address: 127.0.0.1:0 } ]
clusters: [ { name: a, endpoints: [ 127.0.0.1:2, 127.0.0.1:1 ] }, { name: b, endpoints: [ 127.0.0.1:3 ] } ]
routes: [ { match: { path_prefix: / }, cluster: a } ]
)",
                                 "t");
  upstream::identity_table ids;
  auto reg = registry_for(*cfg);
  auto topo = upstream::resolve_topology(*cfg, ids, reg);
  auto set = upstream::series_of(*topo);
  REQUIRE(set.size() == 2);
  REQUIRE(set[0].size() == 2);
  CHECK(set[0][0]->address() == "127.0.0.1:2");
  CHECK(set[0][1]->address() == "127.0.0.1:1");
  CHECK(set[1][0]->cluster() == 1);
}
