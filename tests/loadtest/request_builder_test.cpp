#include "load/request_builder.hpp"

#include <doctest/doctest.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>

using namespace meridian::loadtest;

namespace {
load_config chat_config(int conversations) {
  load_config c;
  c.url = "http://127.0.0.1:9/";
  c.rate = 1;
  c.api = openai_api::chat;
  c.conversations = conversations;
  c.system_prompts = 2;
  c.system_tokens = 64;
  c.turns = 3;
  c.prompt_tokens = *int_dist::parse("uniform:5:20");
  c.max_tokens = *int_dist::parse("fixed:8");
  REQUIRE(c.finalize().empty());
  return c;
}
std::string body_of(const std::string& req) {
  return req.substr(req.find("\r\n\r\n") + 4);
}
// The messages' text up to the end of the last message's content.
std::string history(const std::string& body) {
  return body.substr(0, body.rfind("\"}]"));
}
}  // namespace

TEST_CASE("conversations: each turn replays the history byte for byte, then starts over") {
  auto cfg = chat_config(1);
  runner::request_builder b(cfg, 1);
  std::string r1, r2, r3, r4;
  b.build(r1, 1);
  b.build(r2, 2);
  b.build(r3, 3);
  b.build(r4, 4);
  for (auto* r : {&r1, &r2, &r3, &r4}) {
    auto v = boost::json::parse(body_of(*r));
    CHECK(v.at("messages").as_array().at(0).at("role").as_string() == "system");
  }
  CHECK(boost::json::parse(body_of(r1)).at("messages").as_array().size() == 2);
  CHECK(boost::json::parse(body_of(r3)).at("messages").as_array().size() == 6);
  // Turn 2 starts with all of turn 1 (its user message), then adds the reply and a new message.
  CHECK(body_of(r2).starts_with(history(body_of(r1))));
  CHECK(body_of(r3).starts_with(history(body_of(r2))));
  // After three turns it starts over: one turn, a new conversation (other system prompt).
  CHECK(boost::json::parse(body_of(r4)).at("messages").as_array().size() == 2);
  CHECK_FALSE(body_of(r4).starts_with(history(body_of(r1))));
  CHECK(b.last_prompt_tokens() > 64);
}

TEST_CASE("conversations share the system prompts; the option is checked") {
  auto cfg = chat_config(4);
  runner::request_builder b(cfg, 7);
  std::map<std::string, int> systems;
  for (int i = 0; i < 40; ++i) {
    std::string r;
    b.build(r, static_cast<std::uint64_t>(i));
    auto v = boost::json::parse(body_of(r));
    ++systems[std::string(v.at("messages").as_array().at(0).at("content").as_string())];
  }
  CHECK(systems.size() == 2);
  load_config bad = chat_config(1);
  bad.api = openai_api::completions;
  CHECK(bad.finalize().find("--conversations needs --openai chat") != std::string::npos);
}

TEST_CASE("--header goes on every request") {
  load_config c = chat_config(0);
  c.headers = {"Authorization: Bearer sk-test", "x-priority: critical"};
  REQUIRE(c.finalize().empty());
  runner::request_builder b(c, 1);
  std::string req;
  for (std::uint64_t i = 0; i < 3; ++i) {
    b.build(req, i);
    auto head = req.substr(0, req.find("\r\n\r\n") + 2);
    CHECK(head.find("\r\nAuthorization: Bearer sk-test\r\n") != std::string::npos);
    CHECK(head.find("\r\nx-priority: critical\r\n") != std::string::npos);
  }
}

TEST_CASE("--dataset replays a ShareGPT file: first human turn, the answer's length in tokens") {
  std::string path = "/tmp/meridian-sharegpt-test-" + std::to_string(::getpid()) + ".json";
  {
    std::ofstream f(path);
    f << R"([
      {"id": "a", "conversations": [{"from": "human", "value": "Why is the sky \"blue\"?\nExplain."},
                                    {"from": "gpt", "value": ")" << std::string(400, 'x') << R"("}]},
      {"id": "short", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello there friend"}]},
      {"id": "alone", "conversations": [{"from": "human", "value": "nobody answered this one"}]},
      {"id": "b", "conversations": [{"from": "human", "value": "Write a haiku about routers."},
                                    {"from": "gpt", "value": ")" << std::string(64, 'y') << R"("}]}
    ])";
  }
  load_config c = chat_config(0);
  c.dataset_path = path;
  REQUIRE(c.finalize().empty());
  REQUIRE(c.dataset);
  REQUIRE(c.dataset->size() == 2);  // too short and unanswered ones left out, as vLLM does
  runner::request_builder b(c, 1);
  std::map<std::string, std::int64_t> seen;
  std::string req;
  for (std::uint64_t i = 0; i < 4; ++i) {
    b.build(req, i);
    auto v = boost::json::parse(body_of(req)).as_object();
    std::string content(v["messages"].as_array()[0].as_object()["content"].as_string());
    seen[content] = v["max_tokens"].as_int64();
  }
  CHECK(seen.size() == 2);
  CHECK(seen["Why is the sky \"blue\"?\nExplain."] == 100);
  CHECK(seen["Write a haiku about routers."] == 16);
  load_config bad = chat_config(0);
  bad.dataset_path = "/nonexistent/sharegpt.json";
  CHECK(bad.finalize().find("--dataset") != std::string::npos);
  std::remove(path.c_str());
}

TEST_CASE("--kserve: one gRPC-framed ModelInferRequest per request; its options are checked") {
  load_config c;
  c.url = "http://127.0.0.1:9/";
  c.closed = true;
  c.api = openai_api::kserve;
  c.model = "resnet";
  c.prompt_tokens = *int_dist::parse("fixed:10");
  CHECK(c.finalize() == "--kserve needs --http2 (gRPC is HTTP/2)");
  c.http2 = true;
  c.stream = true;
  REQUIRE(c.finalize().empty());
  CHECK(c.path == "/inference.GRPCInferenceService/ModelStreamInfer");
  runner::request_builder b(c, 1);
  std::string req;
  b.build(req, 42);
  CHECK(req.starts_with("POST /inference.GRPCInferenceService/ModelStreamInfer HTTP/1.1\r\n"));
  CHECK(req.find("\r\nContent-Type: application/grpc\r\nTE: trailers\r\n") != std::string::npos);
  const std::string body = body_of(req);
  REQUIRE(body.size() > 5);
  CHECK(body[0] == '\0');  // not compressed
  const auto len = (static_cast<std::size_t>(static_cast<unsigned char>(body[1])) << 24) |
                   (static_cast<std::size_t>(static_cast<unsigned char>(body[2])) << 16) |
                   (static_cast<std::size_t>(static_cast<unsigned char>(body[3])) << 8) |
                   static_cast<unsigned char>(body[4]);
  CHECK(len == body.size() - 5);
  // model_name (field 1), id (field 3), then the prompt's 10 tokens of 4 bytes (field 7).
  CHECK(body.substr(5, 8) == std::string("\x0a\x06resnet", 8));
  CHECK(body.substr(13, 5) == std::string("\x1a\x03r42", 5));
  CHECK(body.substr(18, 2) == std::string("\x3a\x28", 2));
  CHECK(body.size() == 20 + 40);
  CHECK(b.last_prompt_tokens() == 10);

  load_config h1;
  h1.url = "http://127.0.0.1:9/";
  h1.closed = true;
  h1.streams = 8;
  CHECK(h1.finalize() == "--streams needs --http2 (HTTP/1.1 carries one at a time)");
  h1.http2 = true;
  h1.new_connection = true;
  CHECK(h1.finalize() == "--new-connection is for HTTP/1.1 (not with --http2)");
}
