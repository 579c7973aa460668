// The probe client against a scripted loopback server: one connection, canned reply bytes.
#include "meridian/probe/fetch.hpp"

#include <doctest/doctest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <atomic>
#include <optional>

using namespace meridian;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

enum class then { close, hang };

// Accepts one connection, reads the request head into *got, writes `reply`, then closes or
// (hang) holds the connection until the client closes it.
asio::awaitable<void> serve_once(tcp::acceptor* acc, std::string reply, then after,
                                 std::string* got) {
  auto [ec, s] = co_await acc->async_accept(use_tuple);
  if (ec) co_return;
  std::string buf;
  while (buf.find("\r\n\r\n") == std::string::npos) {
    char tmp[1024];
    auto [rec, n] = co_await s.async_read_some(asio::buffer(tmp), use_tuple);
    if (rec) co_return;
    buf.append(tmp, n);
  }
  *got = buf;
  if (!reply.empty()) co_await asio::async_write(s, asio::buffer(reply), use_tuple);
  if (after == then::hang) {
    char c;
    co_await s.async_read_some(asio::buffer(&c, 1), use_tuple);
  }
}

struct loopback {
  asio::io_context io{1};
  tcp::acceptor acc{io, {asio::ip::make_address("127.0.0.1"), 0}};
  std::string got;

  probe::fetch_request request(std::string path = "/health") {
    probe::fetch_request r;
    r.endpoint = acc.local_endpoint();
    r.host = "backend.test:" + std::to_string(r.endpoint.port());
    r.path = std::move(path);
    r.timeout = 5s;
    return r;
  }
  probe::fetch_result run(std::string reply, then after, probe::fetch_request req,
                          const common::clock& clock = common::steady()) {
    asio::co_spawn(io, serve_once(&acc, std::move(reply), after, &got), asio::detached);
    return run_client(std::move(req), clock);
  }
  probe::fetch_result run(std::string reply, then after = then::close) {
    return run(std::move(reply), after, request());
  }
  probe::fetch_result run_client(probe::fetch_request req, const common::clock& clock) {
    std::optional<probe::fetch_result> out;
    asio::co_spawn(io, probe::fetch(std::move(req), clock),
                   [&](std::exception_ptr e, probe::fetch_result r) {
                     if (!e) out = std::move(r);
                     io.stop();
                   });
    io.run_for(20s);  // a bound on a broken test, not a wait: the client's deadline ends it
    REQUIRE(out.has_value());
    return *out;
  }
};

// Each reading is 10 ms after the previous one.
class stepping_clock final : public common::clock {
 public:
  common::time_point now() const override {
    return common::time_point{} + 1h + std::chrono::milliseconds(10 * ++n_);
  }

 private:
  mutable std::atomic<int> n_{0};
};
}  // namespace

TEST_CASE("fetch sends the probe's GET and reads a Content-Length body") {
  loopback s;
  auto r = s.run(
      "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
      "trailing junk is not part of the body");
  CHECK(r.ok);
  CHECK(r.error == "");
  CHECK(r.status == 200);
  CHECK(r.content_type == "text/plain");
  CHECK(r.body == "hello");
  CHECK(s.got == "GET /health HTTP/1.1\r\nHost: backend.test:" +
                     std::to_string(s.acc.local_endpoint().port()) +
                     "\r\nUser-Agent: meridian-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n");
  CHECK(r.connect_seconds >= 0);
  CHECK(r.response_seconds >= 0);
  CHECK(r.total_seconds >= r.response_seconds);
  CHECK(r.total_seconds >= r.connect_seconds);
}

TEST_CASE("fetch de-chunks a chunked body") {
  loopback s;
  auto r = s.run(
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
      "5\r\n{\"a\":\r\n3;ext=1\r\n1}\n\r\n0\r\nX-Trailer: y\r\n\r\n");
  CHECK(r.ok);
  CHECK(r.body == "{\"a\":1}\n");
  CHECK(r.content_type == "application/json");
}

TEST_CASE("fetch reads a close-delimited body to the end") {
  loopback s;
  std::string big(100000, 'm');
  auto r = s.run("HTTP/1.1 200 OK\r\n\r\n" + big);
  CHECK(r.ok);
  CHECK(r.body == big);
}

TEST_CASE("fetch reports an error status as a complete response") {
  loopback s;
  auto r = s.run("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy");
  CHECK(r.ok);
  CHECK(r.status == 503);
  CHECK(r.body == "busy");
}

TEST_CASE("fetch skips an interim 100 Continue") {
  loopback s;
  auto r =
      s.run("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nContent-Type: text/x\r\n\r\n");
  CHECK(r.ok);
  CHECK(r.status == 204);
  CHECK(r.content_type == "text/x");
  CHECK(r.body == "");
}

TEST_CASE("fetch reports a refused connection") {
  loopback s;
  auto req = s.request();
  s.acc.close();  // nothing listens on the port any more
  auto r = s.run_client(req, common::steady());
  CHECK_FALSE(r.ok);
  CHECK(r.error == "connect refused");
  CHECK(r.connect_seconds == -1);
  CHECK(r.total_seconds >= 0);
}

TEST_CASE("fetch gives up on a silent server at its deadline") {
  loopback s;
  auto req = s.request();
  req.timeout = 200ms;
  auto r = s.run("", then::hang, req);
  CHECK_FALSE(r.ok);
  CHECK(r.error == "timed out waiting for the response");
  CHECK(r.connect_seconds >= 0);
  CHECK(r.total_seconds >= 0.2);
  CHECK(r.total_seconds < 10);
}

TEST_CASE("fetch gives up mid-body at its deadline") {
  loopback s;
  auto req = s.request();
  req.timeout = 200ms;
  auto r = s.run("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf", then::hang, req);
  CHECK_FALSE(r.ok);
  CHECK(r.error == "timed out reading the body");
  CHECK(r.status == 200);
  CHECK(r.response_seconds >= 0);
}

TEST_CASE("fetch's deadline holds even when the injected clock stands still") {
  loopback s;
  common::manual_clock stopped;
  auto req = s.request();
  req.timeout = 200ms;
  auto r = s.run("", then::hang, req, stopped);
  CHECK(r.error == "timed out waiting for the response");
  CHECK(r.total_seconds == 0);
}

TEST_CASE("fetch reports a body cut short by the server") {
  SUBCASE("content-length") {
    loopback s;
    auto r = s.run("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly half of it");
    CHECK_FALSE(r.ok);
    CHECK(r.error == "connection closed mid-body");
    CHECK(r.status == 200);
  }
  SUBCASE("chunked") {
    loopback s;
    auto r = s.run("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
    CHECK_FALSE(r.ok);
    CHECK(r.error == "connection closed mid-body");
  }
}

TEST_CASE("fetch refuses a body over max_body") {
  SUBCASE("announced by Content-Length") {
    loopback s;
    auto req = s.request();
    req.max_body = 10;
    auto r = s.run("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world", then::close, req);
    CHECK_FALSE(r.ok);
    CHECK(r.error == "body exceeds 10 bytes");
  }
  SUBCASE("chunked") {
    loopback s;
    auto req = s.request();
    req.max_body = 10;
    auto r = s.run(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello "
        "\r\n5\r\nworld\r\n0\r\n\r\n",
        then::close, req);
    CHECK_FALSE(r.ok);
    CHECK(r.error == "body exceeds 10 bytes");
  }
  SUBCASE("until close") {
    loopback s;
    auto req = s.request();
    req.max_body = 1000;
    auto r = s.run("HTTP/1.1 200 OK\r\n\r\n" + std::string(50000, 'x'), then::close, req);
    CHECK_FALSE(r.ok);
    CHECK(r.error == "body exceeds 1000 bytes");
  }
  SUBCASE("exactly max_body is fine") {
    loopback s;
    auto req = s.request();
    req.max_body = 11;
    auto r = s.run("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world", then::close, req);
    CHECK(r.ok);
    CHECK(r.body == "hello world");
  }
}

TEST_CASE("fetch refuses a malformed or missing response head") {
  SUBCASE("bad status line") {
    loopback s;
    auto r = s.run("HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n");
    CHECK_FALSE(r.ok);
    CHECK(r.error.starts_with("malformed response head"));
  }
  SUBCASE("not HTTP") {
    loopback s;
    auto r = s.run("SSH-2.0-OpenSSH_9.6\r\n\r\n");
    CHECK_FALSE(r.ok);
    CHECK(r.error.starts_with("malformed response head"));
  }
  SUBCASE("bad chunk size") {
    loopback s;
    auto r = s.run("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
    CHECK_FALSE(r.ok);
    CHECK(r.error.starts_with("malformed chunked body"));
  }
  SUBCASE("head over 64 KiB") {
    loopback s;
    auto r = s.run("HTTP/1.1 200 OK\r\nX-Big: " + std::string(70000, 'a') + "\r\n\r\n");
    CHECK_FALSE(r.ok);
    CHECK(r.error == "response head exceeds 65536 bytes");
  }
  SUBCASE("closed without a response") {
    loopback s;
    auto r = s.run("");
    CHECK_FALSE(r.ok);
    CHECK(r.error == "connection closed before the response");
  }
  SUBCASE("closed mid-head") {
    loopback s;
    auto r = s.run("HTTP/1.1 200 OK\r\nContent-Le");
    CHECK_FALSE(r.ok);
    CHECK(r.error == "connection closed mid-head");
  }
}

TEST_CASE("fetch measures on the injected clock") {
  loopback s;
  stepping_clock clock;
  auto r = s.run("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", then::close, s.request(), clock);
  CHECK(r.ok);
  CHECK(r.connect_seconds > 0);
  CHECK(r.response_seconds > 0);
  CHECK(r.total_seconds >= r.connect_seconds + r.response_seconds);
}

TEST_CASE("fetch refuses a path or host that would break the request line") {
  loopback s;
  auto req = s.request("/health\r\nX-Injected: 1");
  auto r = s.run_client(req, common::steady());
  CHECK_FALSE(r.ok);
  CHECK(r.error == "invalid request path or host");
}
