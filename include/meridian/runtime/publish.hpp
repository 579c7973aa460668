// Publishing immutable snapshots to the workers: the control thread posts a shared_ptr<const T>
// to every worker's io_context, and each worker adopts it on its own thread between requests.
// Nothing mutable is shared: a worker keeps the snapshot it has until the next one arrives.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <memory>
#include <span>

namespace meridian::runtime {

// `apply(worker_index, snapshot)` runs on each worker's thread.
template <class T, class Apply>
void publish(std::span<boost::asio::io_context* const> workers, std::shared_ptr<const T> snapshot,
             Apply apply) {
  for (std::size_t i = 0; i < workers.size(); ++i)
    boost::asio::post(*workers[i], [i, snapshot, apply]() mutable { apply(i, snapshot); });
}

}  // namespace meridian::runtime
