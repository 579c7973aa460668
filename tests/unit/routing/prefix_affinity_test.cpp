#include "meridian/routing/prefix_affinity.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "endpoints_fixture.hpp"

#include "meridian/routing/balancer.hpp"

using namespace meridian;
using test::endpoints;
using test::t0;

namespace {
config::cluster_config cluster(std::size_t n, double load_factor = 1.25) {
  config::cluster_config c;
  c.kind = config::cluster_kind::inference;
  c.balancer = config::balancer_kind::latency_aware;
  c.prefix_affinity.enabled = true;
  c.prefix_affinity.load_factor = load_factor;
  for (std::size_t i = 0; i < n; ++i) {
    config::endpoint_config e;
    e.address = config::host_port{"10.0.0." + std::to_string(i + 1), 8000};
    c.endpoints.push_back(e);
  }
  return c;
}

// A chat body's blocks: a system prompt shared by many, then this conversation's own turns.
std::vector<std::uint64_t> prompt(int system, int conversation, int turns = 4) {
  std::string body = R"({"model":"m","messages":[{"role":"system","content":")";
  for (int i = 0; i < 80; ++i) body += "system prompt " + std::to_string(system) + " ";
  body += R"("})";
  for (int t = 0; t < turns; ++t)
    body += R"(,{"role":"user","content":"conversation )" + std::to_string(conversation) +
            " turn " + std::to_string(t) + R"( with some words"})";
  body += "]}";
  std::vector<std::uint64_t> out;
  routing::hash_blocks(routing::prompt_bytes(body), 64, 1024, out);
  return out;
}
}  // namespace

TEST_CASE("a warm endpoint wins while its queue costs less than the prefill it saves") {
  // Two endpoints, equal latency; a's index holds the prompt, b does not. Each request in
  // flight on a adds latency * 1/capacity of queueing; the prompt's prefill at the prior
  // 0.5 ms per block is what a saves. Load factor out of the way: cost alone decides.
  auto c = cluster(2, 100);
  auto b = routing::make_balancer(c);
  endpoints e(2);
  for (auto& s : e.stats) s.ttft.observe(0.040, t0(), 10);
  common::random_source rng(3);
  auto p = prompt(1, 1);
  routing::pick_input in{rng, t0(), {}, p};
  b->dispatched(0, in);
  const double saving = 0.0005 * static_cast<double>(p.size());
  const double per_request = 0.040 / 8;
  int crossover = -1;
  for (std::uint32_t o = 0; o < 64; ++o) {
    e.stats[0].in_flight = o;
    auto picks = b->pick(e.view, in);
    CHECK(picks.prompt_blocks == p.size());
    if (picks[0] == 1) {
      crossover = static_cast<int>(o);
      CHECK(picks.prefix_spill == routing::candidates::spill::cost);
      CHECK(picks.uncached[0] == static_cast<std::int32_t>(p.size()));
      break;
    }
    CHECK(picks.uncached[0] == 0);
    CHECK(picks.prefix_spill == routing::candidates::spill::none);
  }
  // The first in-flight count whose queueing exceeds the saving: within one request of it.
  CHECK(crossover >= static_cast<int>(saving / per_request) - 1);
  CHECK(crossover <= static_cast<int>(saving / per_request) + 2);
}

TEST_CASE("one hot prefix never takes more than the load factor times the fair share") {
  // The bound never falls below latency.capacity (8 by default): spilling from an engine with
  // free slots only buys a cold prefill elsewhere.
  auto c = cluster(4, 1.25);
  c.prefix_affinity.prefill_per_block = std::chrono::milliseconds(50);  // cost never spills it
  const double capacity = c.latency.capacity;
  auto b = routing::make_balancer(c);
  endpoints e(4);
  for (auto& s : e.stats) s.ttft.observe(0.040, t0(), 10);
  common::random_source rng(5);
  auto p = prompt(7, 7);
  std::size_t spills = 0;
  for (int r = 0; r < 400; ++r) {
    routing::pick_input in{rng, t0(), {}, p};
    auto picks = b->pick(e.view, in);
    auto i = picks[0];
    b->dispatched(i, in);
    ++e.stats[i].in_flight;  // nothing completes: the worst case for a hot prefix
    spills += picks.prefix_spill == routing::candidates::spill::load;
    std::uint32_t total = 0, most = 0;
    for (auto& s : e.stats) total += s.in_flight, most = std::max(most, s.in_flight);
    CHECK(static_cast<double>(most) <=
          std::max(capacity, 1.25 * (static_cast<double>(total) + 1) / 4 + 1));
    // Below the capacity, nothing spills for load (the cost may still spill it).
    if (total <= capacity) CHECK(picks.prefix_spill != routing::candidates::spill::load);
  }
  CHECK(spills > 0);
}

TEST_CASE("independent replicas with cold indexes send a prompt to the same endpoint") {
  auto c = cluster(8);
  auto one = routing::make_balancer(c), two = routing::make_balancer(c);
  endpoints e(8);
  for (auto& s : e.stats) s.ttft.observe(0.040, t0(), 10);
  common::random_source rng1(1), rng2(2);
  std::map<std::uint32_t, int> spread;
  for (int conv = 0; conv < 200; ++conv) {
    auto p = prompt(conv, conv);
    routing::pick_input in1{rng1, t0(), {}, p}, in2{rng2, t0(), {}, p};
    auto a = one->pick(e.view, in1)[0], b = two->pick(e.view, in2)[0];
    CHECK(a == b);
    ++spread[a];
  }
  // Different prompts spread over the endpoints.
  CHECK(spread.size() == 8);
  // A conversation's next turn (its history grown) keeps its endpoint: on the same replica
  // through its index, on another through the rendezvous key (the first 16 blocks, fixed once
  // the prompt is that long).
  for (int conv = 0; conv < 20; ++conv) {
    auto p4 = prompt(conv, conv, 4), p5 = prompt(conv, conv, 5);
    REQUIRE(p4.size() >= routing::prefix_affinity::key_blocks);
    routing::pick_input in4{rng1, t0(), {}, p4}, in5{rng1, t0(), {}, p5}, other{rng2, t0(), {}, p5};
    auto at = one->pick(e.view, in4)[0];
    one->dispatched(at, in4);
    CHECK(one->pick(e.view, in5)[0] == at);
    CHECK(two->pick(e.view, other)[0] == at);
  }
}

TEST_CASE("a session header pins a conversation while its endpoint is healthy and within bound") {
  auto c = cluster(4);
  auto b = routing::make_balancer(c);
  endpoints e(4);
  common::random_source rng(9);
  std::uint64_t session = routing::hash_key("conversation-42");
  std::uint32_t first = 0;
  for (int turn = 0; turn < 10; ++turn) {
    auto p = prompt(turn, turn * 31);  // the prompt alone would go elsewhere each time
    routing::pick_input in{rng, t0(), {}, p, session};
    auto i = b->pick(e.view, in)[0];
    if (turn == 0) first = i;
    CHECK(i == first);
  }
  e.stats[first].healthy = false;
  auto p = prompt(1, 1);
  routing::pick_input in{rng, t0(), {}, p, session};
  CHECK(b->pick(e.view, in)[0] != first);
  e.stats[first].healthy = true;
  e.stats[first].in_flight = 10;  // far over its share
  CHECK(b->pick(e.view, in)[0] != first);
}

TEST_CASE("no prompt blocks and no session: the plain latency-aware pick") {
  auto c = cluster(2);
  auto b = routing::make_balancer(c);
  endpoints e(2);
  e.stats[0].ttft.observe(0.200, t0(), 10);
  e.stats[1].ttft.observe(0.020, t0(), 10);
  common::random_source rng(1);
  routing::pick_input in{rng, t0()};
  auto picks = b->pick(e.view, in);
  CHECK(picks[0] == 1);
  CHECK(picks.prompt_blocks == 0);
  CHECK(picks.uncached[0] == -1);
  CHECK(b->indexed_blocks(0) == 0);
}
