#include "meridian/probe/dns.hpp"

#include <doctest/doctest.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>

#include <fstream>

using namespace meridian;
using namespace std::chrono_literals;
namespace ip = boost::asio::ip;

namespace {
upstream::resolution addresses(std::initializer_list<const char*> list) {
  upstream::resolution r;
  for (const auto* a : list) r.addresses.push_back(ip::make_address(a));
  return r;
}
upstream::resolution failed(const char* why) {
  upstream::resolution r;
  r.error = why;
  return r;
}
}  // namespace

TEST_CASE("merge_names: new addresses are a change, order is not, an outage keeps the last") {
  upstream::name_table previous{{"a", addresses({"10.0.0.1", "10.0.0.2"})}};
  upstream::name_table same{{"a", addresses({"10.0.0.2", "10.0.0.1"})}};
  CHECK_FALSE(probe::merge_names(previous, same));
  upstream::name_table moved{{"a", addresses({"10.0.0.2", "10.0.0.3"})}};
  CHECK(probe::merge_names(previous, moved));
  // The name fails now: it keeps its addresses, which is no change.
  upstream::name_table outage{{"a", failed("timed out")}};
  CHECK_FALSE(probe::merge_names(previous, outage));
  CHECK(outage["a"].addresses.size() == 2);
  CHECK(outage["a"].error == "timed out");
  // A name never resolved stays empty; one the config dropped is a change.
  upstream::name_table fresh{{"b", failed("no address")}};
  CHECK(probe::merge_names(previous, fresh));
  CHECK(fresh["b"].addresses.empty());
  CHECK(fresh.count("a") == 0);
}

TEST_CASE("dns_refresh: each round resolves the config's names from the hosts file") {
  std::string path = "/tmp/meridian-dns-test-" + std::to_string(::getpid());
  std::ofstream(path) << "127.0.0.7 engine.test\n127.0.0.8 engine.test\n";
  auto cfg = config::load_string(R"(
listeners: [ { address: 127.0.0.1:0 } ]
dns: { refresh: 100ms, hosts_file: )" +
                                     path + R"( }
clusters: [ { name: c, endpoints: [ "engine.test:80", 127.0.0.1:1 ] } ]
routes: [ { match: { path_prefix: / }, cluster: c } ]
)",
                                 "t");
  boost::asio::io_context io;
  std::vector<upstream::name_table> rounds;
  std::shared_ptr<const config::gateway_config> used;
  probe::dns_refresh dns(io, cfg, [&](auto c, upstream::name_table t) {
    used = std::move(c);
    rounds.push_back(std::move(t));
    if (rounds.size() == 2) io.stop();
  });
  dns.start();
  io.run_for(5s);
  dns.stop();
  std::remove(path.c_str());
  REQUIRE(rounds.size() == 2);
  CHECK(used == cfg);              // the results say whose names they are
  REQUIRE(rounds[0].size() == 1);  // the literal is never looked up
  CHECK(rounds[0]["engine.test"].addresses.size() == 2);
  CHECK(rounds[0]["engine.test"].error.empty());
}
