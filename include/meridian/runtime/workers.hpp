// Worker threads, one io_context each (single-threaded: no strands, no locks on the data path).
// Created and stopped by the main thread; each io_context is driven by its own thread only.
#pragma once

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <memory>
#include <string_view>
#include <thread>
#include <vector>

namespace meridian::runtime {

class worker_pool {
 public:
  explicit worker_pool(unsigned count);
  ~worker_pool();
  worker_pool(const worker_pool&) = delete;
  worker_pool& operator=(const worker_pool&) = delete;

  unsigned size() const { return static_cast<unsigned>(contexts_.size()); }
  boost::asio::io_context& io(unsigned i) { return *contexts_[i]; }

  // Runs every io_context on its own thread until stop().
  void start();
  void stop();
  void join();
  // After join(): runs each context on the calling thread until the operations still parked
  // in it (cancelled or closed) have completed, at most `limit` each.
  void settle(std::chrono::milliseconds limit);
  // Destroys the io_contexts (and every handler still parked in them) after join().
  void destroy_contexts();

 private:
  std::vector<std::unique_ptr<boost::asio::io_context>> contexts_;
  std::vector<std::thread> threads_;
  struct guards;
  std::unique_ptr<guards> guards_;
};

// "auto" worker count: the CPUs this process may run on (its affinity mask), no more than its
// cgroup's CPU quota allows (a container given 2 CPUs on a 64-core host gets 2 workers).
unsigned default_worker_count();

// The CPUs a quota allows, rounded up; 0 when unlimited or unreadable. cgroup v2 `cpu.max`
// ("200000 100000", "max 100000"), and v1 cpu.cfs_quota_us / cpu.cfs_period_us (-1: none).
unsigned cpus_of_cpu_max(std::string_view cpu_max);
unsigned cpus_of_cfs(long long quota_us, long long period_us);

}  // namespace meridian::runtime
