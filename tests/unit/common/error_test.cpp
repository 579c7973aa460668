#include "meridian/common/error.hpp"

#include <doctest/doctest.h>

using namespace meridian::common;

TEST_CASE("gateway errors have their status, OpenAI shape and Retry-After") {
  CHECK(status_of(error_kind::bad_request) == 400);
  CHECK(status_of(error_kind::overloaded) == 503);
  CHECK(retry_after_of(error_kind::overloaded) == 1);
  CHECK(retry_after_of(error_kind::upstream_timeout) == 0);
  CHECK(
      error_body(error_kind::not_found, "no \"route\"\n") ==
      R"({"error":{"message":"no \"route\"\n","type":"invalid_request_error","code":"route_not_found"}})");
}

TEST_CASE("an attempt's outcome says who failed and what the client should see") {
  outcome o;
  CHECK(o.ok());
  o.kind = outcome_kind::connect_timeout;
  CHECK(o.client_error() == error_kind::upstream_timeout);
  CHECK(o.source() == error_source::upstream);
  o.kind = outcome_kind::connect_failed;
  CHECK(o.client_error() == error_kind::upstream_unavailable);
  o.kind = outcome_kind::pool_exhausted;
  CHECK(o.client_error() == error_kind::overloaded);
  o.kind = outcome_kind::request_body_timeout;
  CHECK(o.client_error() == error_kind::request_timeout);
  CHECK(o.source() == error_source::downstream);
  o.kind = outcome_kind::bad_request_body;
  CHECK(status_of(o.client_error()) == 400);
  o.kind = outcome_kind::request_body_too_large;
  CHECK(status_of(o.client_error()) == 413);
}

TEST_CASE("JSON escaping keeps plain runs and escapes quotes, backslashes and controls") {
  std::string out = "x";
  json_escape_append(out, "plain text, caf\xc3\xa9");
  CHECK(out == "xplain text, caf\xc3\xa9");
  out.clear();
  json_escape_append(out, std::string_view("a\"b\\c\td\x01"
                                           "e\x7f",
                                           10));
  CHECK(out == R"(a\"b\\c\td\u0001e\u007f)");
  out.clear();
  json_escape_append(out, "");
  CHECK(out.empty());
}

TEST_CASE("an outcome is retry-safe only when nothing of the request reached a backend") {
  for (auto k :
       {outcome_kind::pool_exhausted, outcome_kind::connect_failed, outcome_kind::connect_timeout,
        outcome_kind::stale_connection, outcome_kind::reset_before_request}) {
    outcome o;
    o.kind = k;
    CHECK(o.retry_safe());
  }
  for (auto k : {outcome_kind::ok, outcome_kind::reset_before_response,
                 outcome_kind::response_timeout, outcome_kind::bad_response,
                 outcome_kind::reset_during_response, outcome_kind::client_gone}) {
    outcome o;
    o.kind = k;
    CHECK_FALSE(o.retry_safe());
  }
}
