// Micro-benchmark of one balancer pick, for the latency-aware routing requirement: a pick costs
// <= 2 µs at 64 endpoints and does not grow with the number of endpoints beyond that. Not a
// test (src/ARCHITECTURE.md, Measuring: timed checks are benchmarks); prints ns per pick, median of
// 7 repetitions [min-max], as a markdown table (or CSV with --csv).
//
// Each pick runs against endpoint stats that look like a worker's after a while of traffic:
// latency history observed, probe RTT, scraped load of varying age, requests in flight, ~5%
// unhealthy, three models per endpoint. The loop also does what the proxy does around a pick
// (in flight and dispatched up, completions later, scrapes refreshing), so the state moves and
// nothing can be hoisted; the "harness" row is that loop with a random index instead of a pick.
//
// Run pinned: taskset -c 1 ./build/tests/meridian-bench-pick [--quick] [--csv] [--picks N]

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "meridian/common/clock.hpp"
#include "meridian/common/random.hpp"
#include "meridian/config/config.hpp"
#include "meridian/routing/balancer.hpp"
#include "meridian/upstream/stats.hpp"

using namespace meridian;

namespace {

constexpr int repetitions = 7;
constexpr double tau = 10;                            // latency.decay default
constexpr auto step = std::chrono::microseconds(20);  // 50k picks/s of virtual time
constexpr std::array<std::size_t, 8> sizes{2, 4, 8, 16, 64, 256, 1024, 4096};
constexpr std::array<config::balancer_kind, 4> kinds{
    config::balancer_kind::latency_aware, config::balancer_kind::peak_ewma,
    config::balancer_kind::least_request, config::balancer_kind::round_robin};

std::int64_t ns_of(common::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

const std::string_view wanted_model = "meta-llama/Llama-3.1-8B-Instruct";

// One cluster's endpoints as one worker sees them, plus what the harness needs to drive them.
struct fleet {
  fleet(std::size_t n, common::time_point now, std::uint64_t seed) : stats(n), rng(seed) {
    view.reserve(n);
    base.resize(n);
    scrape_age.resize(n);
    common::random_source r(seed ^ 0x9e3779b97f4a7c15ULL);
    auto secs = [](double s) {
      return std::chrono::duration_cast<common::duration>(std::chrono::duration<double>(s));
    };
    for (std::size_t i = 0; i < n; ++i) {
      auto& s = stats[i];
      view.push_back(&s);
      double u = r.unit();
      base[i] = 0.02 * (1 + 9 * u * u * u);  // TTFT 20-200 ms, most endpoints near the fast end
      // Ten seconds of history, one sample a second.
      for (int k = 0; k < 10; ++k) {
        auto at = now - std::chrono::seconds(10 - k);
        double j = 0.8 + 0.4 * r.unit();
        s.ttft.observe(base[i] * j, at, tau);
        s.response.observe(base[i] * 25 * j, at, tau);
        s.service.observe(base[i] * 20 * j, at, tau);
        s.tpot.observe(0.01 * j, at, tau);
      }
      s.local_zone = i % 4 != 0;
      s.in_flight = static_cast<std::uint32_t>(r.below(4));
      s.dispatched = 1000 + r.below(1000);
      s.completed = s.dispatched - s.in_flight;
      s.capacity_seen = 16;

      auto& p = s.probe;
      p.probed = true;
      p.healthy = true;
      p.successes = 100;
      p.rtt = 0.0005 + (s.local_zone ? 0.001 : 0.02) * r.unit();
      p.wait = p.rtt * 0.1;
      p.connect = p.rtt * 0.5;
      p.probed_at = now - secs(r.unit());
      p.load_known = true;
      p.waiting = static_cast<double>(r.below(6));
      p.running = static_cast<double>(1 + r.below(16));
      p.kv_usage = r.unit();  // about a fifth above the 0.8 threshold
      // Most readings fresh, a third fading (stale_after 2 s: full weight to 2 s, none at 4 s).
      scrape_age[i] = secs(3 * r.unit());
      p.scraped_at = now - scrape_age[i];
      s.dispatched_at_scrape = s.dispatched - r.below(4);
      s.completed_at_scrape = s.completed - r.below(4);
      // Each endpoint its own list (as each /v1/models answer is), sorted as serves() needs.
      std::vector<std::string> models{"Qwen/Qwen2.5-7B-Instruct", std::string(wanted_model),
                                      "mistralai/Mistral-7B-Instruct-v0.3"};
      std::sort(models.begin(), models.end());
      p.models = std::make_shared<const std::vector<std::string>>(std::move(models));
    }
    // ~5% unhealthy, at random places (none below 16 endpoints).
    std::size_t down = (n + 10) / 20;
    for (std::size_t k = 0; k < down;) {
      auto& s = stats[r.below(n)];
      if (!s.healthy) continue;
      s.healthy = false;
      s.probe.healthy = false;
      ++k;
    }
    // Requests outstanding on this worker beyond the initial ones: each pick's request completes
    // `window` picks later.
    std::size_t w = 16;
    while (w < std::min<std::size_t>(2 * n, 1024)) w *= 2;
    ring.assign(w, slot{});
  }

  struct slot {
    std::uint32_t endpoint = 0;
    bool used = false;
    std::int64_t picked_ns = 0;
  };

  // What the proxy does with the winner of a pick, and what the rest of the worker does to the
  // stats meanwhile: an older request completes (every 8th teaches latency), one endpoint's
  // scraped reading is refreshed.
  void after_pick(std::uint32_t i, common::time_point now) {
    std::int64_t now_ns = ns_of(now);
    auto& s = stats[i];
    ++s.in_flight;
    ++s.dispatched;
    ++s.awaiting_first;
    s.awaiting_since_sum_ns += now_ns;

    auto& old = ring[head];
    if (old.used) {
      auto& d = stats[old.endpoint];
      --d.in_flight;
      ++d.completed;
      --d.awaiting_first;
      d.awaiting_since_sum_ns -= old.picked_ns;
      if ((++completions & 7) == 0) {
        double j = 0.8 + 0.4 * rng.unit();
        d.ttft.observe(base[old.endpoint] * j, now, tau);
        d.service.observe(base[old.endpoint] * 20 * j, now, tau);
      }
    }
    old = {i, true, now_ns};
    head = (head + 1) & (ring.size() - 1);

    auto& r = stats[scrape_cursor];
    r.probe.scraped_at = now - scrape_age[scrape_cursor];
    r.dispatched_at_scrape = r.dispatched;
    r.completed_at_scrape = r.completed;
    if (++scrape_cursor == stats.size()) scrape_cursor = 0;
  }

  std::vector<upstream::endpoint_stats> stats;
  std::vector<const upstream::endpoint_stats*> view;
  std::vector<double> base;
  std::vector<common::duration> scrape_age;
  std::vector<slot> ring;
  std::size_t head = 0, scrape_cursor = 0;
  std::uint64_t completions = 0;
  common::random_source rng;  // the harness's own, so the balancer's draws are its alone
};

struct options {
  bool csv = false;
  std::uint64_t picks = 2'000'000;
};

struct cell {
  double median = 0, min = 0, max = 0;
};

// Global sinks: what the picks chose feeds an output, so no pick is dead code.
std::uint64_t checksum = 0;
std::uint64_t panics = 0;

// `choose(now)` returns the endpoint picked; the loop is timed as one block per repetition.
template <class Choose>
cell measure(fleet& f, common::time_point& now, std::uint64_t picks, Choose&& choose) {
  auto run = [&](std::uint64_t count) {
    for (std::uint64_t k = 0; k < count; ++k) {
      now += step;
      std::uint32_t i = choose(now);
      checksum += i;
      f.after_pick(i, now);
    }
  };
  run(picks / 4);  // warm caches and fill the ring: the state is in its steady regime
  std::array<double, repetitions> ns{};
  for (auto& r : ns) {
    auto t0 = std::chrono::steady_clock::now();
    run(picks);
    auto t1 = std::chrono::steady_clock::now();
    r = std::chrono::duration<double, std::nano>(t1 - t0).count() / static_cast<double>(picks);
  }
  std::sort(ns.begin(), ns.end());
  return {ns[repetitions / 2], ns.front(), ns.back()};
}

cell bench_kind(config::balancer_kind kind, std::size_t n, std::uint64_t picks) {
  config::cluster_config c;
  c.kind = config::cluster_kind::inference;
  c.balancer = kind;
  auto now = common::time_point{} + std::chrono::hours(1);
  fleet f(n, now, 1000 + n);
  auto b = routing::make_balancer(c);
  common::random_source rng(42 + n);
  routing::pick_input in{rng, now, wanted_model};
  return measure(f, now, picks, [&](common::time_point t) {
    in.now = t;
    auto got = b->pick(f.view, in);
    panics += got.reason == routing::pick_reason::panic;
    return got[0];
  });
}

// The same loop with a random index in place of the pick: what the harness itself costs.
cell bench_harness(std::size_t n, std::uint64_t picks) {
  auto now = common::time_point{} + std::chrono::hours(1);
  fleet f(n, now, 1000 + n);
  common::random_source rng(42 + n);
  return measure(f, now, picks,
                 [&](common::time_point) { return static_cast<std::uint32_t>(rng.below(n)); });
}

[[noreturn]] void usage(int code) {
  std::fprintf(code == 0 ? stdout : stderr,
               "usage: meridian-bench-pick [--quick] [--csv] [--picks N]\n"
               "  ns per balancer pick, median of %d repetitions [min-max], per balancer kind\n"
               "  and endpoint count. --quick: 200000 picks per repetition (default 2000000).\n"
               "  Pin it: taskset -c 1 meridian-bench-pick\n",
               repetitions);
  std::exit(code);
}

options parse(int argc, char** argv) {
  options o;
  for (int a = 1; a < argc; ++a) {
    std::string_view arg = argv[a];
    if (arg == "--quick") {
      o.picks = 200'000;
    } else if (arg == "--csv") {
      o.csv = true;
    } else if (arg == "--picks" && a + 1 < argc) {
      o.picks = std::strtoull(argv[++a], nullptr, 10);
      if (o.picks == 0) usage(2);
    } else if (arg == "--help" || arg == "-h") {
      usage(0);
    } else {
      usage(2);
    }
  }
  return o;
}

std::string fmt(const cell& c) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f [%.1f-%.1f]", c.median, c.min, c.max);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  auto opt = parse(argc, argv);
  std::vector<std::array<cell, kinds.size() + 1>> table(sizes.size());
  for (std::size_t r = 0; r < sizes.size(); ++r) {
    for (std::size_t k = 0; k < kinds.size(); ++k)
      table[r][k] = bench_kind(kinds[k], sizes[r], opt.picks);
    table[r][kinds.size()] = bench_harness(sizes[r], opt.picks);
  }

  if (opt.csv) {
    std::printf("balancer,endpoints,picks_per_rep,reps,median_ns,min_ns,max_ns\n");
    for (std::size_t r = 0; r < sizes.size(); ++r)
      for (std::size_t k = 0; k <= kinds.size(); ++k) {
        auto name = k < kinds.size() ? config::to_string(kinds[k]) : std::string_view("harness");
        const auto& c = table[r][k];
        std::printf("%.*s,%zu,%llu,%d,%.2f,%.2f,%.2f\n", static_cast<int>(name.size()), name.data(),
                    sizes[r], static_cast<unsigned long long>(opt.picks), repetitions, c.median,
                    c.min, c.max);
      }
  } else {
    std::printf(
        "ns per pick, median [min-max] of %d repetitions of %llu picks (harness "
        "included; its own cost in the last column)\n\n",
        repetitions, static_cast<unsigned long long>(opt.picks));
    std::printf("| endpoints |");
    for (auto kind : kinds) {
      auto name = config::to_string(kind);
      std::printf(" %.*s |", static_cast<int>(name.size()), name.data());
    }
    std::printf(" harness |\n|---|");
    for (std::size_t k = 0; k <= kinds.size(); ++k) std::printf("---|");
    std::printf("\n");
    for (std::size_t r = 0; r < sizes.size(); ++r) {
      std::printf("| %zu |", sizes[r]);
      for (const auto& c : table[r]) std::printf(" %s |", fmt(c).c_str());
      std::printf("\n");
    }
  }
  std::fprintf(stderr, "checksum %llu, panic picks %llu\n",
               static_cast<unsigned long long>(checksum), static_cast<unsigned long long>(panics));
  return panics == 0 ? 0 : 1;
}
