// Choosing the I/O reactor. Asio fixes its reactor at compile time, so Meridian ships two builds
// of the data path (meridian: epoll, meridian-io_uring: io_uring); the launcher probes the kernel
// and execs the build that matches. Startup only (main thread).
#pragma once

#include <functional>
#include <string>
#include <string_view>

namespace meridian::runtime {

enum class io_request { auto_select, io_uring, epoll };
enum class io_kind { io_uring, epoll };

struct io_choice {
  io_kind kind = io_kind::epoll;
  bool ok = true;      // false: the request cannot be met (io_uring demanded but refused)
  std::string reason;  // for the log: why this backend
};

// Returns 0 when an io_uring instance can be created and used, else the errno that refused it
// (EPERM/ENOSYS under Docker's default seccomp profile).
int probe_io_uring();

io_choice choose_io_backend(io_request requested, const std::function<int()>& probe);

// The reactor this binary was compiled for.
io_kind compiled_io_kind();
std::string_view to_string(io_kind k);

}  // namespace meridian::runtime
