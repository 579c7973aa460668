#include "meridian/routing/route_table.hpp"

#include "meridian/http/parser.hpp"

#include <doctest/doctest.h>

#include <vector>

using namespace meridian;

namespace {
struct fixture {
  std::shared_ptr<const config::gateway_config> cfg = config::load_string(R"(
listeners: [ { address: 127.0.0.1:0 } ]
clusters:
  - { name: a, endpoints: [ 127.0.0.1:1 ] }
  - { name: b, endpoints: [ 127.0.0.1:2 ] }
  - { name: c, endpoints: [ 127.0.0.1:3 ] }
routes:
  - { name: exact, match: { path: /health, method: GET }, cluster: a }
  - { name: tenant, match: { path_prefix: /v1/, headers: { x-tenant: blue } }, cluster: a }
  - { name: host, match: { host: api.example.com }, cluster: c }
  - { name: big, match: { path_prefix: /v1/, model: llama-70b }, cluster: b }
  - { name: rest, match: { path_prefix: /v1/ }, cluster: c }
)",
                                                                          "t");
  routing::route_table table{*cfg};
  std::vector<http::header> storage = std::vector<http::header>(50);
  http::request_head head;
  std::string text;

  routing::match_result match(std::string t, std::optional<std::string_view> model = {}) {
    text = std::move(t);
    http::parse_error err{};
    REQUIRE(http::parse_request(text, {}, storage, head, err) == http::parse_status::complete);
    routing::request_view v{head.method, head.path, head.host, head.fields(),
                            head.body != http::body_kind::none, {}};
    return table.match(v, model);
  }
  std::string name(const routing::match_result& r) { return table.route(r.route).name; }
};
}  // namespace

TEST_CASE("routes match in order on path, method, headers and host") {
  fixture f;
  auto r = f.match("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(r.outcome == routing::match_outcome::matched);
  CHECK(f.name(r) == "exact");
  CHECK(f.match("POST /health HTTP/1.1\r\nHost: x\r\n\r\n").outcome ==
        routing::match_outcome::no_match);
  CHECK(f.match("GET /health?probe=1 HTTP/1.1\r\nHost: x\r\n\r\n").outcome ==
        routing::match_outcome::matched);
  r = f.match("GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Tenant: blue\r\n\r\n");
  CHECK(f.name(r) == "tenant");
  r = f.match("GET /other HTTP/1.1\r\nHost: API.example.com:8080\r\n\r\n");
  CHECK(f.name(r) == "host");
  r = f.match("GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(f.name(r) == "rest");  // no body: the model route is skipped
}

TEST_CASE("a model route asks for the body, then matches on it") {
  fixture f;
  std::string post = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n";
  auto r = f.match(post);
  CHECK(r.outcome == routing::match_outcome::need_model);
  r = f.match(post, std::string_view("llama-70b"));
  CHECK(f.name(r) == "big");
  r = f.match(post, std::string_view("llama-8b"));
  CHECK(f.name(r) == "rest");
  r = f.match(post, std::string_view(""));
  CHECK(f.name(r) == "rest");
}

TEST_CASE("a route can require the verified client certificate's subject") {
  auto cfg = config::load_string(R"(
listeners: [ { address: 127.0.0.1:0 } ]
clusters: [ { name: a, endpoints: [ 127.0.0.1:1 ] } ]
routes:
  - { name: team, match: { client_subject: "CN=team-a,O=Acme" }, cluster: a }
  - { name: rest, match: { path_prefix: / }, cluster: a }
)",
                                 "t");
  routing::route_table table{*cfg};
  routing::request_view v{"GET", "/v1/models", "x", {}, false, "CN=team-a,O=Acme"};
  CHECK(table.route(table.match(v, std::nullopt).route).name == "team");
  v.client_subject = "CN=team-b,O=Acme";
  CHECK(table.route(table.match(v, std::nullopt).route).name == "rest");
  v.client_subject = {};  // no client certificate (plain HTTP, or TLS without mutual TLS)
  CHECK(table.route(table.match(v, std::nullopt).route).name == "rest");
}
