// Micro-benchmark of the prefix index, for the KV-cache-aware routing requirement: >= 1 M block
// look-ups per second per core. Not a test (src/ARCHITECTURE.md, Measuring: timed checks are
// benchmarks).
//
// A full index (capacity blocks, 64 endpoints) of conversations that share a few long system
// prompts; each round hashes a prompt of 8 KiB (128 blocks of 64 bytes), matches it against
// every endpoint and inserts it for one, as a pick and dispatch would. Prints, median of 7
// repetitions [min-max]: ns per block look-up (match), ns per block hashed, ns per insert block.
//
// Run pinned: taskset -c 1 ./build/tests/meridian-bench-prefix [--capacity N]

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "meridian/routing/prefix.hpp"

using namespace meridian;
using bench_clock = std::chrono::steady_clock;

namespace {
constexpr std::size_t block = 64, prompt_bytes = 8192, endpoints = 64;
constexpr int repetitions = 7, rounds = 20000;

std::string prompt(std::uint64_t system, std::uint64_t conversation) {
  std::string p;
  while (p.size() < prompt_bytes / 2) p += "system prompt " + std::to_string(system) + " ";
  while (p.size() < prompt_bytes) p += "turn of " + std::to_string(conversation) + " ";
  p.resize(prompt_bytes);
  return p;
}

struct figures {
  double hash_ns, match_ns, insert_ns;
};

figures once(routing::prefix_index& idx, const std::vector<std::string>& prompts,
             std::uint64_t& seed) {
  std::vector<std::uint64_t> hashes;
  std::array<std::uint32_t, endpoints> matched{};
  double hash_s = 0, match_s = 0, insert_s = 0;
  std::size_t blocks = 0;
  std::uint64_t sink = 0;
  for (int r = 0; r < rounds; ++r) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    const auto& p = prompts[(seed >> 33) % prompts.size()];
    hashes.clear();
    auto t0 = bench_clock::now();
    routing::hash_blocks(p, block, 4096, hashes);
    auto t1 = bench_clock::now();
    idx.match(hashes, matched);
    auto t2 = bench_clock::now();
    idx.insert(hashes, static_cast<std::uint32_t>((seed >> 20) % endpoints));
    auto t3 = bench_clock::now();
    sink += matched[seed % endpoints];
    hash_s += std::chrono::duration<double>(t1 - t0).count();
    match_s += std::chrono::duration<double>(t2 - t1).count();
    insert_s += std::chrono::duration<double>(t3 - t2).count();
    blocks += hashes.size();
  }
  if (sink == 0xffffffff) std::puts("");
  double n = static_cast<double>(blocks);
  return {hash_s / n * 1e9, match_s / n * 1e9, insert_s / n * 1e9};
}

std::string cell(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f [%.1f-%.1f]", v[v.size() / 2], v.front(), v.back());
  return buf;
}
}  // namespace

int main(int argc, char** argv) {
  std::size_t capacity = 1 << 20;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--capacity" && i + 1 < argc) {
      capacity = std::strtoull(argv[++i], nullptr, 10);
    } else {
      std::fprintf(stderr, "usage: meridian-bench-prefix [--capacity BLOCKS]\n");
      return 2;
    }
  }
  // 8 system prompts x 4,000 conversations: more distinct blocks than the index holds.
  std::vector<std::string> prompts;
  for (std::uint64_t c = 0; c < 32000; ++c) prompts.push_back(prompt(c % 8, c));
  routing::prefix_index idx(capacity);
  std::uint64_t seed = 42;
  once(idx, prompts, seed);  // warm-up: fills the index
  std::vector<double> h, m, ins;
  for (int r = 0; r < repetitions; ++r) {
    auto f = once(idx, prompts, seed);
    h.push_back(f.hash_ns);
    m.push_back(f.match_ns);
    ins.push_back(f.insert_ns);
  }
  std::printf(
      "prefix index: capacity %zu blocks (%zu held), %zu endpoints, %zu-byte blocks, "
      "%zu-byte prompts\n",
      capacity, idx.size(), endpoints, block, prompt_bytes);
  std::printf("| step | ns per block, median [min-max] of %d x %d prompts |\n|---|---|\n",
              repetitions, rounds);
  std::printf("| hash | %s |\n| match (look-up) | %s |\n| insert | %s |\n", cell(h).c_str(),
              cell(m).c_str(), cell(ins).c_str());
  std::sort(m.begin(), m.end());
  std::printf("look-ups per second (median): %.2f M\n", 1e3 / m[m.size() / 2]);
  return 0;
}
