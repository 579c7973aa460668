// Stream resume against real mock engines: one engine cuts every stream mid-answer (a reset);
// the gateway continues each cut stream on the other engine, and the client gets the text an
// unbroken run gives (the mock's text is a function of its context), ending normally.
#include <doctest/doctest.h>

#include <boost/json.hpp>

#include <unistd.h>

#include <string>

#include "support/gateway_process.hpp"
#include "support/mock_process.hpp"
#include "support/raw_client.hpp"

using namespace test;
using namespace std::chrono_literals;

namespace {
const std::string body =
    R"({"model":"mock-llm","stream":true,"max_tokens":24,"messages":[{"role":"user","content":"tell me a story"}]})";

// The content of a chat stream's events, in order; `done`: it ended with [DONE].
std::string content_of(const std::string& sse, bool& done, bool& error) {
  std::string text;
  done = error = false;
  std::size_t pos = 0;
  while ((pos = sse.find("data: ", pos)) != std::string::npos) {
    auto end = sse.find("\n\n", pos);
    auto data = sse.substr(pos + 6, end - pos - 6);
    pos = end;
    if (data == "[DONE]") {
      done = true;
      continue;
    }
    auto v = boost::json::parse(data).as_object();
    if (v.contains("error")) error = true;
    auto* choices = v.if_contains("choices");
    if (!choices || choices->as_array().empty()) continue;
    auto& delta = choices->as_array()[0].as_object()["delta"].as_object();
    if (auto* c = delta.if_contains("content"); c && c->is_string()) text += c->as_string();
  }
  return text;
}

// The raw response to one streamed chat request, up to the connection's close (a stream ended
// abnormally has no last chunk to stop at). Events are never split across chunks here.
std::string stream(std::uint16_t port) {
  int fd = connect_to(port);
  send_all(fd,
           "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
           "Content-Type: application/json\r\nContent-Length: " +
               std::to_string(body.size()) + "\r\n\r\n" + body);
  auto raw = read_until_close(fd, 10000ms);
  ::close(fd);
  return raw;
}

std::string config(std::uint16_t cutting, std::uint16_t good, const std::string& route_keys) {
  return "listeners: [ { name: public, address: 127.0.0.1:0 } ]\nworkers: 1\n"
         "clusters:\n  - name: llm\n    kind: inference\n    balancer: round_robin\n"
         "    endpoints: [ 127.0.0.1:" +
         std::to_string(cutting) + ", 127.0.0.1:" + std::to_string(good) +
         " ]\n"
         "routes: [ { name: chat, match: { path_prefix: / }, cluster: llm,\n"
         "            retries: { on: [connect_failure, reset_before_request, "
         "reset_before_response] }" +
         route_keys + " } ]\n";
}
}  // namespace

TEST_CASE("resume: a stream cut mid-answer goes on elsewhere, with the unbroken run's text") {
  mock_process cutting({"--reset-rate", "1", "--decode-ms", "2", "--name", "cutting"});
  mock_process good({"--decode-ms", "2", "--name", "good"});
  bool done = false, error = false;
  auto expected = content_of(stream(good.port()), done, error);
  REQUIRE(done);
  REQUIRE(expected.size() > 24);  // 24 tokens of text

  gateway_process gw(config(cutting.port(), good.port(), ", resume: { attempts: 2 }"));
  for (int i = 0; i < 6; ++i) {
    CAPTURE(i);
    auto sse = stream(gw.port());
    auto text = content_of(sse, done, error);
    CHECK(text == expected);
    CHECK(done);
    CHECK_FALSE(error);
  }
  auto m = metrics_text(gw);
  CHECK(has(m, "meridian_stream_resumes_total{cluster=\"llm\",result=\"ok\"}"));
  CHECK_FALSE(has(m, "meridian_stream_resumes_total{cluster=\"llm\",result=\"ok\"} 0"));
  CHECK(has(m, "meridian_stream_resumes_total{cluster=\"llm\",result=\"failed\"} 0"));
  CHECK(has(gw.log(), "stream resumed"));
}

TEST_CASE("resume: without it, a cut stream ends with an error event and no [DONE]") {
  mock_process cutting({"--reset-rate", "1", "--decode-ms", "2", "--name", "cutting"});
  mock_process good({"--decode-ms", "2", "--name", "good"});
  gateway_process gw(config(cutting.port(), good.port(), ""));
  int cut = 0;
  for (int i = 0; i < 4; ++i) {
    bool done = false, error = false;
    content_of(stream(gw.port()), done, error);
    if (error) {
      ++cut;
      CHECK_FALSE(done);
    }
  }
  CHECK(cut >= 1);  // round robin: every other stream went to the cutting engine
}
