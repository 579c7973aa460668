#include "meridian/runtime/workers.hpp"

#include <sched.h>

#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

#include <boost/asio/executor_work_guard.hpp>

namespace meridian::runtime {

struct worker_pool::guards {
  std::vector<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> items;
};

worker_pool::worker_pool(unsigned count) : guards_(std::make_unique<guards>()) {
  for (unsigned i = 0; i < count; ++i) {
    // Each context is only ever run by one thread; the hint drops the reactor's I/O locking.
    contexts_.push_back(
        std::make_unique<boost::asio::io_context>(BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO));
    guards_->items.emplace_back(contexts_.back()->get_executor());
  }
}

worker_pool::~worker_pool() {
  stop();
  join();
}

void worker_pool::start() {
  for (auto& io : contexts_) threads_.emplace_back([ctx = io.get()] { ctx->run(); });
}

void worker_pool::stop() {
  guards_->items.clear();
  for (auto& io : contexts_) io->stop();
}

void worker_pool::join() {
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
}

void worker_pool::settle(std::chrono::milliseconds limit) {
  guards_->items.clear();
  for (auto& io : contexts_) {
    io->restart();
    io->run_for(limit);
  }
}

void worker_pool::destroy_contexts() {
  guards_->items.clear();
  contexts_.clear();
}

unsigned cpus_of_cfs(long long quota_us, long long period_us) {
  if (quota_us <= 0 || period_us <= 0) return 0;
  return static_cast<unsigned>((quota_us + period_us - 1) / period_us);
}

unsigned cpus_of_cpu_max(std::string_view text) {
  std::istringstream in{std::string(text)};
  std::string quota;
  long long period = 0;
  if (!(in >> quota >> period) || quota == "max") return 0;
  char* end = nullptr;
  long long q = std::strtoll(quota.c_str(), &end, 10);
  if (end != quota.c_str() + quota.size()) return 0;
  return cpus_of_cfs(q, period);
}

namespace {
// This process's cgroup path for a controller ("" for the v2 unified hierarchy), or nullopt.
std::optional<std::string> cgroup_path(std::string_view controller) {
  std::ifstream f("/proc/self/cgroup");
  for (std::string line; std::getline(f, line);) {
    auto a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    std::string_view names(line.data() + a + 1, b - a - 1);
    bool match = controller.empty()
                     ? names.empty()
                     : ("," + std::string(names) + ",").find("," + std::string(controller) + ",") !=
                           std::string::npos;
    if (match) return line.substr(b + 1);
  }
  return std::nullopt;
}

// The quota of this process's cgroup, in CPUs (0: none found), v2 first, then v1.
unsigned cgroup_cpus() {
  if (auto p = cgroup_path("")) {
    std::ifstream f("/sys/fs/cgroup" + (*p == "/" ? std::string() : *p) + "/cpu.max");
    std::string text;
    if (std::getline(f, text)) return cpus_of_cpu_max(text);
  }
  if (auto p = cgroup_path("cpu")) {
    std::string dir = "/sys/fs/cgroup/cpu" + (*p == "/" ? std::string() : *p);
    long long quota = -1, period = 0;
    std::ifstream(dir + "/cpu.cfs_quota_us") >> quota;
    std::ifstream(dir + "/cpu.cfs_period_us") >> period;
    return cpus_of_cfs(quota, period);
  }
  return 0;
}
}  // namespace

unsigned default_worker_count() {
  unsigned n = 0;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) n = static_cast<unsigned>(CPU_COUNT(&set));
  if (n == 0) n = std::thread::hardware_concurrency();
  if (n == 0) n = 1;
  unsigned quota = cgroup_cpus();
  return quota > 0 && quota < n ? quota : n;
}

}  // namespace meridian::runtime
