#include "meridian/runtime/io_backend.hpp"

#include <doctest/doctest.h>

#include <cerrno>

using namespace meridian::runtime;

TEST_CASE("auto falls back to epoll when io_uring is refused, and says why") {
  int probes = 0;
  auto refused = [&] {
    ++probes;
    return EPERM;
  };
  auto c = choose_io_backend(io_request::auto_select, refused);
  CHECK(c.ok);
  CHECK(c.kind == io_kind::epoll);
  CHECK(c.reason.find("refused") != std::string::npos);
  CHECK(c.reason.find("falling back to epoll") != std::string::npos);
  CHECK(probes == 1);
}

TEST_CASE("auto takes io_uring when the kernel allows it") {
  auto c = choose_io_backend(io_request::auto_select, [] { return 0; });
  CHECK(c.ok);
  CHECK(c.kind == io_kind::io_uring);
}

TEST_CASE("a demanded io_uring that is refused is an error, epoll never probes") {
  auto c = choose_io_backend(io_request::io_uring, [] { return ENOSYS; });
  CHECK_FALSE(c.ok);
  bool probed = false;
  c = choose_io_backend(io_request::epoll, [&] {
    probed = true;
    return 0;
  });
  CHECK(c.kind == io_kind::epoll);
  CHECK_FALSE(probed);
}
