// The harness over TLS: meridian-mock's TLS front and meridian-load's https:// client, with a
// certificate made by the OpenSSL command line for the test.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "load/load.hpp"
#include "mock/mock.hpp"

using namespace meridian::loadtest;

namespace {
// A self-signed ECDSA certificate for mock.test in a fresh directory.
struct cert_dir {
  std::string dir;
  cert_dir() {
    char tmpl[] = "/tmp/meridian-lt-tls-XXXXXX";
    dir = mkdtemp(tmpl);
    auto cmd = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " +
               dir + "/k.pem -out " + dir + "/c.pem -days 2 -subj /CN=mock.test " +
               "-addext subjectAltName=DNS:mock.test >/dev/null 2>&1";
    REQUIRE(std::system(cmd.c_str()) == 0);
  }
  ~cert_dir() { std::filesystem::remove_all(dir); }
};

load_config https_run(std::uint16_t port, const std::string& ca) {
  load_config c;
  c.url = "https://127.0.0.1:" + std::to_string(port) + "/static";
  c.closed = true;
  c.max_requests = 40;
  c.duration_s = 10;
  c.connections = 2;
  c.quiet = true;
  c.progress = 0;
  c.cacert = ca;
  c.sni = "mock.test";
  return c;
}
}  // namespace

TEST_CASE("harness TLS: the mock serves https, the load client verifies, resumes, and times handshakes") {
  cert_dir certs;
  llm_options o;
  o.listen = "127.0.0.1:0";
  llm_mock m(o);
  auto plain = m.start();
  tls_front front({"127.0.0.1:0", certs.dir + "/c.pem", certs.dir + "/k.pem", 1});
  auto port = front.start(plain);

  // Keep-alive: one handshake per connection.
  auto c = https_run(port, certs.dir + "/c.pem");
  REQUIRE(c.finalize().empty());
  auto s = run_load(c);
  CHECK(s.completed == 40);
  CHECK(s.failed == 0);
  CHECK(s.handshakes == 2);
  CHECK(s.handshake.count() == 2);

  // A new connection per request: the first of each worker full, the rest resumed.
  c = https_run(port, certs.dir + "/c.pem");
  c.new_connection = true;
  REQUIRE(c.finalize().empty());
  s = run_load(c);
  CHECK(s.completed == 40);
  CHECK(s.handshakes == 40);
  CHECK(s.resumed >= 38);
  c = https_run(port, certs.dir + "/c.pem");
  c.new_connection = true;
  c.tls_resume = false;
  REQUIRE(c.finalize().empty());
  s = run_load(c);
  CHECK(s.completed == 40);
  CHECK(s.resumed == 0);

  // The wrong name: no request goes out, and the report says why.
  c = https_run(port, certs.dir + "/c.pem");
  c.sni = "other.test";
  c.max_requests = 4;
  REQUIRE(c.finalize().empty());
  s = run_load(c);
  CHECK(s.completed == 0);
  CHECK(s.handshake_failures > 0);
  CHECK(s.handshake_error == "hostname mismatch");

  // https:// needs --cacert or an explicit --insecure; they exclude each other.
  load_config bad;
  bad.url = "https://127.0.0.1:1/";
  bad.closed = true;
  CHECK(bad.finalize().find("--cacert") != std::string::npos);
  bad.insecure = true;
  CHECK(bad.finalize().empty());
  bad.cacert = "x";
  CHECK(bad.finalize().find("exclude") != std::string::npos);
  front.stop();
  m.stop();
}
