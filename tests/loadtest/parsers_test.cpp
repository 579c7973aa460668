#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "common/http_parser.hpp"
#include "common/parse.hpp"
#include "load/load.hpp"
#include "load/sse.hpp"

using namespace meridian::loadtest;

TEST_CASE("durations, sizes and distributions parse") {
  CHECK(parse_duration("250ms")->count() == 250'000'000);
  CHECK(parse_duration("1.5s")->count() == 1'500'000'000);
  CHECK(parse_duration("2m")->count() == 120'000'000'000);
  CHECK(parse_duration("30")->count() == 30'000'000'000);
  CHECK_FALSE(parse_duration("5 parsecs"));
  CHECK_FALSE(parse_duration("-1s"));
  CHECK(*parse_size("10MiB") == 10u << 20);
  CHECK(*parse_size("64KiB") == 64u << 10);
  CHECK(*parse_size("100MB") == 100'000'000u);
  CHECK_FALSE(parse_size("10 potatoes"));
  auto u = int_dist::parse("uniform:64:512");
  REQUIRE(u);
  std::mt19937_64 rng(1);
  for (int i = 0; i < 1000; ++i) {
    auto x = u->sample(rng);
    CHECK((x >= 64 && x <= 512));
  }
  CHECK(int_dist::parse("fixed:128")->sample(rng) == 128);
  CHECK(int_dist::parse("normal:256:64"));
  CHECK_FALSE(int_dist::parse("uniform:10:5"));
  CHECK_FALSE(int_dist::parse("zipf:1"));
}

TEST_CASE("response heads parse the fields the client needs") {
  std::string r =
      "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nX-Mock-Backend: a1\r\nConnection: "
      "close\r\n\r\nHello";
  response_head h;
  long n = parse_response_head(r, h);
  CHECK(n == static_cast<long>(r.size() - 5));
  CHECK(h.status == 200);
  CHECK(h.content_length == 13);
  CHECK(h.backend == "a1");
  CHECK_FALSE(h.keep_alive);
  // Another header naming the backend (an nginx in front adding $upstream_addr).
  std::string via = "HTTP/1.1 200 OK\r\nX-Upstream: 10.0.0.7:8000\r\nX-Mock-Backend: a1\r\n\r\n";
  response_head v;
  CHECK(parse_response_head(via, v, "x-upstream") > 0);
  CHECK(v.backend == "10.0.0.7:8000");
  response_head partial;
  CHECK(parse_response_head("HTTP/1.1 200 OK\r\nContent-Le", partial) == 0);
  CHECK(parse_response_head("garbage\r\n\r\n", partial) < 0);
  request_head q;
  std::string req =
      "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  CHECK(parse_request_head(req, q) == static_cast<long>(req.size()));
  CHECK(q.method == "POST");
  CHECK(q.target == "/v1/chat/completions");
  CHECK(q.chunked);
  CHECK(q.find("host") == "x");
}

TEST_CASE("chunked bodies decode regardless of how the bytes are split") {
  const std::string wire = "5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nTrailer: x\r\n\r\nNEXT";
  for (std::size_t split = 1; split < wire.size(); ++split) {
    body_decoder d;
    d.reset_chunked();
    std::string out;
    std::size_t used =
        d.feed(std::string_view(wire).substr(0, split), [&](std::string_view s) { out.append(s); });
    used += d.feed(std::string_view(wire).substr(used), [&](std::string_view s) { out.append(s); });
    CHECK(d.done());
    CHECK(out == "hello, world");
    CHECK(wire.substr(used) == "NEXT");
  }
  body_decoder bad;
  bad.reset_chunked();
  bad.feed("zz\r\n", [](std::string_view) {});
  CHECK(bad.failed());
}

TEST_CASE("SSE events reassemble across arbitrary splits") {
  const std::string wire =
      "data: {\"a\":1}\n\n: keep-alive\n\ndata: line1\r\ndata: line2\r\n\r\ndata: [DONE]\n\n";
  for (std::size_t split = 0; split <= wire.size(); ++split) {
    sse_parser p;
    std::vector<std::string> ev;
    p.feed(std::string_view(wire).substr(0, split),
           [&](std::string_view e) { ev.emplace_back(e); });
    p.feed(std::string_view(wire).substr(split), [&](std::string_view e) { ev.emplace_back(e); });
    REQUIRE(ev.size() == 3);
    CHECK(ev[0] == "{\"a\":1}");
    CHECK(ev[1] == "line1\nline2");
    CHECK(ev[2] == "[DONE]");
  }
}

TEST_CASE("OpenAI chunks are classified") {
  auto tok = inspect_openai_chunk(
      R"({"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":" hi"},"finish_reason":null}]})");
  CHECK(tok.has_token);
  auto role = inspect_openai_chunk(
      R"({"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]})");
  CHECK_FALSE(role.has_token);
  auto usage = inspect_openai_chunk(
      R"({"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}})");
  CHECK(usage.has_usage);
  CHECK(usage.completion_tokens == 7);
  CHECK(inspect_openai_chunk("[DONE]").done);
  CHECK(inspect_openai_chunk(R"({"choices":[{"text":"abc"}]})").has_token);
  CHECK(inspect_openai_chunk("{not json").is_error);
}

TEST_CASE("--stages: steps and ramps make the rate profile; the stages set the duration") {
  double total = 0;
  auto points = parse_stages("10s@5,20s@45~,10s@45", total);
  REQUIRE(points);
  CHECK(total == doctest::Approx(40));
  auto p = rate_profile::from_points(*points, total);
  REQUIRE(p);
  CHECK(p->rate_at(5) == doctest::Approx(5));
  CHECK(p->rate_at(20) == doctest::Approx(25));  // halfway up the ramp from 5 to 45
  CHECK(p->rate_at(35) == doctest::Approx(45));
  CHECK(p->expected_count() == doctest::Approx(10 * 5 + 20 * 25 + 10 * 45));
  for (const char* bad : {"", "10s", "10s@", "@5", "0s@5", "10s@-1", "10s@5,,"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_stages(bad, total));
  }
}
