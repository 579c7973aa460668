#include <doctest/doctest.h>

#include <vector>

#include "mock/engine_model.hpp"

using namespace meridian::loadtest;
using std::chrono::nanoseconds;

namespace {
// Runs the model to completion in virtual time; returns per-request completion times (ms).
std::vector<double> drain(engine_model& m, std::size_t n) {
  std::vector<double> done(n + 1, -1);
  double now = 0;
  std::vector<engine_event> ev;
  while (!m.idle()) {
    now += static_cast<double>(m.begin_iteration().count()) / 1e6;
    ev.clear();
    m.end_iteration(ev);
    for (auto& e : ev)
      if (e.finished) done[e.id] = now;
  }
  return done;
}
}  // namespace

TEST_CASE("with one slot, requests queue behind each other") {
  engine_params p;
  p.slots = 1;
  p.prefill_us_per_token = 0;
  p.decode_ms = 10;
  engine_model m(p);
  for (int i = 0; i < 3; ++i) m.submit(16, 5, {});
  CHECK(m.waiting() == 3);
  auto done = drain(m, 3);
  CHECK(done[1] == doctest::Approx(50));
  CHECK(done[2] == doctest::Approx(100));
  CHECK(done[3] == doctest::Approx(150));
}

TEST_CASE("a larger batch runs together but each step is slower") {
  engine_params p;
  p.slots = 4;
  p.prefill_us_per_token = 0;
  p.decode_ms = 10;
  p.decode_growth = 0.1;
  engine_model m(p);
  for (int i = 0; i < 4; ++i) m.submit(16, 5, {});
  auto done = drain(m, 4);
  for (int i = 1; i <= 4; ++i) CHECK(done[i] == doctest::Approx(5 * 10 * 1.3));
}

TEST_CASE("the prefix cache removes prefill time for a repeated prompt") {
  engine_params p;
  p.slots = 1;
  p.prefill_us_per_token = 100;
  p.decode_ms = 1;
  engine_model m(p);
  std::string prompt(4 * 1024, 'a');  // 1024 tokens = 64 blocks
  for (std::size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<char>('a' + (i * 7) % 26);
  m.submit(1024, 1, prefix_block_hashes(prompt, 16));
  auto cold = m.begin_iteration();
  std::vector<engine_event> ev;
  m.end_iteration(ev);
  m.submit(1024, 1, prefix_block_hashes(prompt, 16));
  auto warm = m.begin_iteration();
  m.end_iteration(ev);
  CHECK(cold == nanoseconds(1024 * 100'000 + 1'000'000));
  CHECK(warm == nanoseconds(1'000'000));
  CHECK(m.cached_tokens_total() == 1024);
  // Each first token says how much of its prompt came from the cache (vLLM's usage detail).
  REQUIRE(ev.size() == 2);
  CHECK(ev[0].cached_tokens == 0);
  CHECK(ev[1].cached_tokens == 1024);
  // A prompt that differs in its first block shares nothing.
  std::string other = prompt;
  other[0] = 'Z';
  m.submit(1024, 1, prefix_block_hashes(other, 16));
  CHECK(m.begin_iteration() == cold);
}

TEST_CASE("cancel removes queued and running sequences") {
  engine_params p;
  p.slots = 1;
  engine_model m(p);
  auto a = m.submit(10, 100, {});
  auto b = m.submit(10, 100, {});
  m.begin_iteration();
  CHECK(m.running() == 1);
  CHECK(m.cancel(b));
  CHECK(m.cancel(a));
  CHECK_FALSE(m.cancel(a));
  CHECK(m.idle());
}
