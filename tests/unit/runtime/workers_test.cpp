#include "meridian/runtime/workers.hpp"

#include <doctest/doctest.h>

#include <boost/asio/post.hpp>

#include <atomic>
#include <set>
#include <thread>

using namespace meridian;

TEST_CASE("each worker runs its own io_context on its own thread until stopped") {
  runtime::worker_pool pool(2);
  CHECK(pool.size() == 2);
  std::atomic<int> ran{0};
  std::thread::id ids[2];
  pool.start();
  for (unsigned i = 0; i < 2; ++i)
    boost::asio::post(pool.io(i), [&, i] {
      ids[i] = std::this_thread::get_id();
      ++ran;
    });
  while (ran.load() < 2) std::this_thread::yield();
  CHECK(ids[0] != ids[1]);
  pool.stop();
  pool.join();
  pool.settle(std::chrono::milliseconds(10));
  pool.destroy_contexts();
  CHECK(runtime::default_worker_count() >= 1);
}

TEST_CASE("a cgroup CPU quota caps the worker count, rounded up") {
  CHECK(runtime::cpus_of_cpu_max("200000 100000") == 2);
  CHECK(runtime::cpus_of_cpu_max("150000 100000\n") == 2);
  CHECK(runtime::cpus_of_cpu_max("50000 100000") == 1);
  CHECK(runtime::cpus_of_cpu_max("max 100000") == 0);
  CHECK(runtime::cpus_of_cpu_max("garbage") == 0);
  CHECK(runtime::cpus_of_cpu_max("12x 100000") == 0);
  CHECK(runtime::cpus_of_cfs(-1, 100000) == 0);
  CHECK(runtime::cpus_of_cfs(400000, 100000) == 4);
  CHECK(runtime::cpus_of_cfs(100000, 0) == 0);
}
