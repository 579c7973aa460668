#include <doctest/doctest.h>

#include <boost/asio/io_context.hpp>

#include "meridian/upstream/cluster.hpp"

using namespace meridian;
using namespace std::chrono_literals;

namespace {
std::shared_ptr<upstream::topology> topo_of(std::vector<std::pair<upstream::endpoint_id, int>> eps,
                                            std::size_t max_idle = 2, std::size_t max_open = 3) {
  auto t = std::make_shared<upstream::topology>();
  auto& c = t->clusters.emplace_back();
  c.name = "c";
  c.pool.max_idle_per_endpoint = max_idle;
  c.pool.max_connections_per_endpoint = max_open;
  for (auto [id, port] : eps) {
    upstream::endpoint_info e;
    e.id = id;
    e.address = "127.0.0.1:" + std::to_string(port);
    e.resolved = {boost::asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)};
    e.series = std::make_shared<metrics::endpoint_series>(0, e.address, 1);
    c.endpoints.push_back(e);
  }
  return t;
}

upstream::link open_socket(boost::asio::io_context& io) {
  return upstream::link::make(io.get_executor());
}
}  // namespace

TEST_CASE("a new topology keeps the stats and pools of endpoints whose id survives") {
  boost::asio::io_context io;
  upstream::worker_upstreams ups(topo_of({{1, 1001}, {2, 1002}}), 0);
  auto kept = ups.cluster(0).endpoints[1];
  kept->stats.in_flight = 7;
  ups.opened(*kept);
  ups.release(*kept, open_socket(io), std::chrono::steady_clock::now());
  // Endpoint 2 moves to the front, 1 leaves, 3 arrives.
  auto moves = ups.apply(topo_of({{2, 1002}, {3, 1003}}));
  CHECK(moves.changed(0));
  CHECK(moves.new_of_old[0] == std::vector<std::uint32_t>{upstream::endpoint_moves::gone, 0});
  auto& c = ups.cluster(0);
  REQUIRE(c.endpoints.size() == 2);
  CHECK(c.endpoints[0] == kept);
  CHECK(c.endpoints[0]->stats.in_flight == 7);
  CHECK(c.endpoints[0]->idle.size() == 1);
  CHECK(c.endpoints[1]->stats.in_flight == 0);
  CHECK(c.stats_view[0] == &kept->stats);
  CHECK(c.endpoints[0]->info->address == "127.0.0.1:1002");
  // Each endpoint writes this worker's block of its own series.
  CHECK(c.endpoints[1]->metrics == &c.endpoints[1]->info->series->worker(0));
  // The same endpoints again, in the same order: nothing moved.
  CHECK_FALSE(ups.apply(topo_of({{2, 1002}, {3, 1003}})).changed(0));
}

TEST_CASE("a connection returned to an endpoint that left the topology is closed") {
  boost::asio::io_context io;
  upstream::worker_upstreams ups(topo_of({{1, 1001}}), 0);
  upstream::endpoint_ref held = ups.cluster(0).endpoints[0];  // a request in flight holds it
  ups.opened(*held);
  ups.apply(topo_of({{2, 1002}}));
  CHECK(held->retired);
  CHECK(held->info->address == "127.0.0.1:1001");  // still readable for the access log
  ups.release(*held, open_socket(io), std::chrono::steady_clock::now());
  CHECK(held->idle.empty());
  CHECK(held->open == 0);
}

TEST_CASE("pools cap idle and open connections and hand back the most recent") {
  boost::asio::io_context io;
  upstream::worker_upstreams ups(topo_of({{1, 1001}}), 0);
  auto& ep = *ups.cluster(0).endpoints[0];
  auto now = std::chrono::steady_clock::now();
  for (int i = 0; i < 3; ++i) {
    REQUIRE(ups.may_open(ep));
    ups.opened(ep);
  }
  CHECK_FALSE(ups.may_open(ep));
  for (int i = 0; i < 3; ++i) ups.release(ep, open_socket(io), now);
  CHECK(ep.idle.size() == 2);  // the third was closed: pool full
  CHECK(ep.open == 2);
  CHECK(ups.take_idle(ep, now + 10ms).has_value());
  CHECK(ep.idle.size() == 1);
  // Past the idle timeout a pooled connection is closed rather than used.
  CHECK_FALSE(ups.take_idle(ep, now + 1h).has_value());
  CHECK(ep.open == 1);
}

TEST_CASE("an endpoint whose address changes keeps its stats but not its pooled connections") {
  boost::asio::io_context io;
  upstream::worker_upstreams ups(topo_of({{1, 1001}}), 0);
  auto ep = ups.cluster(0).endpoints[0];
  ep->stats.in_flight = 3;
  ups.opened(*ep);
  ups.release(*ep, open_socket(io), std::chrono::steady_clock::now());
  ups.apply(topo_of({{1, 2001}}));  // same id, re-resolved elsewhere
  CHECK(ups.cluster(0).endpoints[0] == ep);
  CHECK(ep->stats.in_flight == 3);
  CHECK(ep->idle.empty());
  CHECK(ep->open == 0);
}
