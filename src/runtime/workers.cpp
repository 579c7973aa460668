#include "meridian/runtime/workers.hpp"

#include <sched.h>

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

unsigned default_worker_count() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return static_cast<unsigned>(n);
  }
  unsigned n = std::thread::hardware_concurrency();
  return n ? n : 1;
}

}  // namespace meridian::runtime
