#include "meridian/proxy/access_log.hpp"

#include <doctest/doctest.h>
#include <unistd.h>

#include <boost/json.hpp>

#include <string>

using namespace meridian;

namespace {
std::string drain(int fd) {
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
  return out;
}
}  // namespace

TEST_CASE("access log lines are JSON, escaped, and written only on flush") {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  {
    proxy::access_log log(true, fds[1]);
    proxy::access_record r;
    r.request_id = "abc";
    r.method = "POST";
    r.path = "/v1/chat?q=\"x\"\n";
    r.route = "chat";
    r.upstream = "127.0.0.1:9000";
    r.status = 200;
    r.bytes_in = 10;
    r.bytes_out = 20;
    r.duration_s = 0.0125;
    r.ttfb_s = 0.002;
    log.record(r);
    r.request_id = "def";
    r.error = "upstream stalled";
    r.upstream = {};
    log.record(r);
    log.flush();
  }
  ::close(fds[1]);
  std::string text = drain(fds[0]);
  ::close(fds[0]);
  auto nl = text.find('\n');
  REQUIRE(nl != std::string::npos);
  auto first = boost::json::parse(text.substr(0, nl)).as_object();
  CHECK(first.at("request_id").as_string() == "abc");
  CHECK(first.at("path").as_string() == "/v1/chat?q=\"x\"\n");
  CHECK(first.at("status").as_int64() == 200);
  auto second = boost::json::parse(text.substr(nl + 1, text.find('\n', nl + 1) - nl - 1));
  CHECK(second.as_object().at("error").as_string() == "upstream stalled");
}

TEST_CASE("a disabled access log writes nothing") {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  {
    proxy::access_log log(false, fds[1]);
    log.record({});
    log.flush();
  }
  ::close(fds[1]);
  CHECK(drain(fds[0]).empty());
  ::close(fds[0]);
}
