#include "meridian/runtime/io_backend.hpp"

#include <liburing.h>

#include <cerrno>
#include <cstring>

#include "meridian/common/log.hpp"

namespace meridian::runtime {

int probe_io_uring() {
  io_uring ring;
  int rc = io_uring_queue_init(8, &ring, 0);
  if (rc < 0) return -rc;
  // A ring that is created but cannot submit (some sandboxes) is as good as none.
  io_uring_sqe* sqe = io_uring_get_sqe(&ring);
  int result = 0;
  if (!sqe) {
    result = EAGAIN;
  } else {
    io_uring_prep_nop(sqe);
    rc = io_uring_submit(&ring);
    if (rc < 0) {
      result = -rc;
    } else {
      io_uring_cqe* cqe = nullptr;
      rc = io_uring_wait_cqe(&ring, &cqe);
      if (rc < 0)
        result = -rc;
      else
        io_uring_cqe_seen(&ring, cqe);
    }
  }
  io_uring_queue_exit(&ring);
  return result;
}

io_choice choose_io_backend(io_request requested, const std::function<int()>& probe) {
  if (requested == io_request::epoll) return {io_kind::epoll, true, "io_backend: epoll requested"};
  int err = probe();
  if (err == 0) return {io_kind::io_uring, true, "io_uring available"};
  std::string why = common::cat("io_uring refused by the kernel (", std::strerror(err), ")");
  if (requested == io_request::io_uring)
    return {io_kind::io_uring, false, why + "; io_backend: io_uring was demanded"};
  return {io_kind::epoll, true, why + "; falling back to epoll"};
}

io_kind compiled_io_kind() {
#ifdef MERIDIAN_BUILD_IO_URING
  return io_kind::io_uring;
#else
  return io_kind::epoll;
#endif
}

std::string_view to_string(io_kind k) {
  return k == io_kind::io_uring ? "io_uring" : "epoll";
}

}  // namespace meridian::runtime
