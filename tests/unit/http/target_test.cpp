#include "meridian/http/target.hpp"

#include <doctest/doctest.h>

using namespace meridian::http;

TEST_CASE("origin-form targets are absolute paths with an optional query, nothing else") {
  for (const char* ok : {"/", "/v1/chat/completions", "/a?b=c&d=%2F", "/~user/@x:1;y=2"})
    CHECK(valid_origin_form(ok));
  for (const char* bad : {"", "v1", "/a#frag", "/a b", "/a%2", "/a%zz", "/a\"b", "/a[1]", "/a\\b"})
    CHECK_FALSE(valid_origin_form(bad));
}

TEST_CASE("absolute-form gives its authority and forwards its path in origin-form") {
  target_parts p;
  REQUIRE(parse_target("http://api.example.com:8080/v1/x?y=1", "GET", p));
  CHECK(p.authority == "api.example.com:8080");
  CHECK(p.path == "/v1/x?y=1");
  REQUIRE(parse_target("HTTPS://h", "GET", p));
  CHECK(p.path == "/");
  CHECK_FALSE(parse_target("http://h/a#f", "GET", p));
  CHECK_FALSE(parse_target("http://user@h/", "GET", p));
  CHECK_FALSE(parse_target("ftp://h/", "GET", p));
  CHECK_FALSE(parse_target("http://h?q", "GET", p));
}

TEST_CASE("the asterisk is a target for OPTIONS only") {
  target_parts p;
  CHECK(parse_target("*", "OPTIONS", p));
  CHECK_FALSE(parse_target("*", "GET", p));
}
