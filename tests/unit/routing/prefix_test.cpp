#include "meridian/routing/prefix.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <numeric>
#include <string>

using namespace meridian;

namespace {
std::vector<std::uint64_t> blocks(std::string_view text, std::size_t block = 16) {
  std::vector<std::uint64_t> out;
  routing::hash_blocks(text, block, 1000, out);
  return out;
}
std::string repeat(std::string_view s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}
}  // namespace

TEST_CASE("the prompt is the raw JSON of messages, else of prompt, found as a key token") {
  CHECK(routing::prompt_bytes(R"({"model":"m","messages":[{"role":"user"}]})") ==
        R"([{"role":"user"}]})");
  CHECK(routing::prompt_bytes(R"({"prompt" : "hello", "model":"m"})") ==
        R"("hello", "model":"m"})");
  // Messages win over a prompt key; a quoted name inside a string value is not a key.
  CHECK(routing::prompt_bytes(R"({"prompt":"x","messages":[1]})") == "[1]}");
  CHECK(routing::prompt_bytes(R"({"input":"say \"messages\": no"})").empty());
  CHECK(routing::prompt_bytes(R"({"model":"m"})").empty());
}

TEST_CASE("block hashes are chained: equal hashes mean equal prefixes") {
  std::string a = repeat("system prompt...", 4) + "question one....";
  std::string b = repeat("system prompt...", 4) + "question two....";
  auto ha = blocks(a), hb = blocks(b);
  REQUIRE(ha.size() == 5);
  REQUIRE(hb.size() == 5);
  // The same four blocks, then a difference; and the same block text after a different
  // beginning hashes differently.
  CHECK(std::equal(ha.begin(), ha.begin() + 4, hb.begin()));
  CHECK(ha[4] != hb[4]);
  auto hc = blocks("another start..." + repeat("system prompt...", 3));
  CHECK(hc[1] != ha[1]);
  // Only whole blocks are hashed, and at most max_blocks of them.
  CHECK(blocks(std::string(15, 'x')).empty());
  std::vector<std::uint64_t> few;
  routing::hash_blocks(a, 16, 2, few);
  CHECK(few.size() == 2);
  // A pure function of the bytes: the same on every call (and every replica).
  CHECK(blocks(a) == ha);
}

TEST_CASE("the index tells how many leading blocks each endpoint holds") {
  routing::prefix_index idx(100);
  auto p = blocks(repeat("shared system p.", 6) + repeat("conversation one", 2));
  auto q = blocks(repeat("shared system p.", 6) + repeat("conversation two", 2));
  idx.insert(p, 1);
  idx.insert(q, 2);
  std::array<std::uint32_t, 4> m{};
  idx.match(p, m);
  CHECK(m[0] == 0);
  CHECK(m[1] == 8);  // all of p
  CHECK(m[2] == 6);  // the shared system prompt
  CHECK(m[3] == 0);
  CHECK(idx.blocks_of(1) == 8);
  CHECK(idx.blocks_of(2) == 8);
  CHECK(idx.size() == 10);
  // An endpoint that forgets (restarted) holds nothing; out-of-range endpoints are ignored.
  idx.forget(1);
  idx.match(p, m);
  CHECK(m[1] == 0);
  CHECK(m[2] == 6);
  std::array<std::uint32_t, 2> small{};
  idx.match(q, small);
  CHECK(small[1] == 0);
}

TEST_CASE("renumbering endpoints keeps what each holds under its new number; one gone holds none") {
  routing::prefix_index idx(100);
  auto p = blocks(repeat("shared system p.", 6) + repeat("conversation one", 2));
  auto q = blocks(repeat("shared system p.", 6) + repeat("conversation two", 2));
  idx.insert(p, 0);
  idx.insert(q, 2);
  // Endpoint 0 is now 1, 1 left (nothing held), 2 left too.
  constexpr auto gone = 0xffffffffu;
  std::array<std::uint32_t, 3> moves{1, gone, gone};
  idx.renumber(moves);
  std::array<std::uint32_t, 3> m{};
  idx.match(p, m);
  CHECK(m[0] == 0);
  CHECK(m[1] == 8);
  CHECK(m[2] == 0);
  CHECK(idx.blocks_of(1) == 8);
  CHECK(idx.blocks_of(2) == 0);
  idx.match(q, m);
  CHECK(m[1] == 6);  // the shared part, through endpoint 1 alone now
  // A new endpoint 2 learns afresh.
  idx.insert(q, 2);
  idx.match(q, m);
  CHECK(m[2] == 8);
}

TEST_CASE("memory is bounded: the least recently used blocks go first, a prompt's start last") {
  routing::prefix_index idx(10);
  auto hot = blocks(repeat("hot system promp", 4));
  idx.insert(hot, 0);
  for (int i = 0; i < 20; ++i) {
    idx.insert(hot, 0);  // the hot prefix is used again and again
    idx.insert(blocks(std::string(16, static_cast<char>('a' + i)) + repeat("tail............", 2)),
               1);
    CHECK(idx.size() <= 10);
  }
  std::array<std::uint32_t, 2> m{};
  idx.match(hot, m);
  CHECK(m[0] == 4);
  // A prompt longer than the whole index keeps its first blocks, not its last.
  routing::prefix_index tiny(3);
  auto longp = blocks(repeat("0123456789abcdef", 8));
  tiny.insert(longp, 0);
  tiny.match(longp, m);
  CHECK(m[0] == 3);
}

TEST_CASE("each block remembers the most recent endpoints, up to its ways") {
  routing::prefix_index idx(10);
  auto p = blocks("one block.......");
  for (std::uint32_t e = 0; e < 6; ++e) idx.insert(p, e);
  std::array<std::uint32_t, 6> m{};
  idx.match(p, m);
  CHECK(m == std::array<std::uint32_t, 6>{0, 0, 1, 1, 1, 1});
  idx.insert(p, 2);  // already there: moves to the front, nothing dropped
  idx.match(p, m);
  CHECK(m == std::array<std::uint32_t, 6>{0, 0, 1, 1, 1, 1});
}

TEST_CASE(
    "rendezvous hashing: independent replicas agree, and losing an endpoint moves only its keys") {
  auto top = [](std::uint64_t key, std::vector<std::uint64_t> eps) {
    return *std::max_element(eps.begin(), eps.end(), [&](auto a, auto b) {
      return routing::rendezvous_weight(key, a) < routing::rendezvous_weight(key, b);
    });
  };
  std::vector<std::uint64_t> all{11, 12, 13, 14, 15, 16, 17, 18};
  std::vector<std::uint64_t> less{11, 12, 13, 14, 15, 16, 17};  // 18 left
  std::array<int, 19> share{};
  int moved = 0;
  for (std::uint64_t key = 0; key < 8000; ++key) {
    auto k = blocks("key " + std::to_string(key) + " padded to a block")[0];
    auto a = top(k, all);
    ++share[a];
    auto b = top(k, less);
    if (a != 18) moved += a != b;
  }
  CHECK(moved == 0);
  // Keys spread evenly: each of 8 endpoints gets 1/8 within 15%.
  for (std::uint64_t e : all) {
    CHECK(share[e] > 850);
    CHECK(share[e] < 1150);
  }
}

TEST_CASE("the index agrees with a plain model of it over many random inserts and evictions") {
  // The model: blocks in LRU order, most recent first, each with its endpoints, newest first.
  struct block_of {
    std::uint64_t hash;
    std::vector<std::uint32_t> eps;
  };
  std::vector<block_of> model;
  const std::size_t cap = 37;
  routing::prefix_index idx(cap);
  std::uint64_t seed = 7;
  auto next = [&] { return (seed = seed * 6364136223846793005ull + 1442695040888963407ull) >> 33; };
  for (int op = 0; op < 4000; ++op) {
    // Prompts from a few shared beginnings with varied lengths, so blocks repeat and collide in
    // the table's probe runs.
    std::string text = "beginning " + std::to_string(next() % 5) + " ..";
    for (auto n = next() % 6; n > 0; --n) text += "turn " + std::to_string(next() % 7) + "........";
    auto hs = blocks(text, 8);
    auto ep = static_cast<std::uint32_t>(next() % 6);
    idx.insert(hs, ep);
    for (auto k = hs.size(); k-- > 0;) {
      auto it = std::find_if(model.begin(), model.end(), [&](auto& b) { return b.hash == hs[k]; });
      block_of b{hs[k], {}};
      if (it != model.end()) {
        b = *it;
        model.erase(it);
      } else if (model.size() == cap) {
        model.pop_back();
      }
      std::erase(b.eps, ep);
      b.eps.insert(b.eps.begin(), ep);
      if (b.eps.size() > routing::prefix_index::ways) b.eps.pop_back();
      model.insert(model.begin(), b);
    }
    REQUIRE(idx.size() == model.size());
    for (std::uint32_t e = 0; e < 6; ++e)
      REQUIRE(idx.blocks_of(e) ==
              static_cast<std::size_t>(std::count_if(model.begin(), model.end(), [&](auto& b) {
                return std::find(b.eps.begin(), b.eps.end(), e) != b.eps.end();
              })));
    // Probe with a random other prompt: each endpoint's run of leading blocks it holds.
    std::string probe = "beginning " + std::to_string(next() % 5) + " ..";
    for (auto n = next() % 6; n > 0; --n)
      probe += "turn " + std::to_string(next() % 7) + "........";
    auto ps = blocks(probe, 8);
    std::array<std::uint32_t, 6> got{}, want{};
    idx.match(ps, got);
    for (std::uint32_t e = 0; e < 6; ++e) {
      for (auto h : ps) {
        auto it = std::find_if(model.begin(), model.end(), [&](auto& b) { return b.hash == h; });
        if (it == model.end() || std::find(it->eps.begin(), it->eps.end(), e) == it->eps.end())
          break;
        ++want[e];
      }
    }
    REQUIRE(got == want);
  }
}
