#include "proxy/resume.hpp"

#include <doctest/doctest.h>

#include <boost/json.hpp>

using namespace meridian;
namespace json = boost::json;

namespace {
std::string chat_event(const std::string& content, const char* finish = nullptr) {
  std::string f = finish ? std::string("\"") + finish + "\"" : "null";
  return "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":" +
         json::serialize(json::string(content)) + "},\"finish_reason\":" + f + "}]}\n\n";
}
}  // namespace

TEST_CASE("resume: a chat stream goes on as a final assistant message, with fewer tokens left") {
  proxy::stream_resume r;
  REQUIRE(r.begin(
      R"({"model":"m","stream":true,"max_tokens":10,"messages":[{"role":"user","content":"hi"}]})",
      true));
  std::string events =
      "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
      "\"content\":\"\"},\"finish_reason\":null}]}\n\n" +
      chat_event(" the") + ": keep-alive comment\n\n" + chat_event(" \"of\"");
  // Split anywhere, CRLF or LF.
  for (std::size_t i = 0; i < events.size(); i += 7) r.observe(events.substr(i, 7));
  CHECK(r.text() == " the \"of\"");
  CHECK(r.tokens() == 2);
  CHECK(r.resumable());
  auto next = json::parse(r.continuation()).as_object();
  CHECK(next["max_tokens"].as_int64() == 8);
  CHECK(next["continue_final_message"].as_bool());
  CHECK_FALSE(next["add_generation_prompt"].as_bool());
  auto& msgs = next["messages"].as_array();
  REQUIRE(msgs.size() == 2);
  CHECK(msgs[1].as_object()["role"].as_string() == "assistant");
  CHECK(msgs[1].as_object()["content"].as_string() == " the \"of\"");
  CHECK(next["model"].as_string() == "m");
}

TEST_CASE("resume: a text completion goes on with the text appended to the prompt") {
  proxy::stream_resume r;
  REQUIRE(r.begin(R"({"prompt":"Once","stream":true,"max_completion_tokens":5})", false));
  r.observe(
      "data: {\"choices\":[{\"index\":0,\"text\":\" upon\",\"finish_reason\":null}]}\r\n\r\n");
  auto next = json::parse(r.continuation()).as_object();
  CHECK(next["prompt"].as_string() == "Once upon");
  CHECK(next["max_completion_tokens"].as_int64() == 4);
  CHECK_FALSE(next.contains("continue_final_message"));
}

TEST_CASE("resume: a client continuing its own answer is continued after it") {
  proxy::stream_resume r;
  REQUIRE(r.begin(R"({"stream":true,"continue_final_message":true,"add_generation_prompt":false,
    "messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"Well,"}]})",
                  true));
  r.observe(chat_event(" yes"));
  auto next = json::parse(r.continuation()).as_object();
  auto& msgs = next["messages"].as_array();
  REQUIRE(msgs.size() == 2);
  CHECK(msgs[1].as_object()["content"].as_string() == "Well, yes");
  CHECK_FALSE(next.contains("max_tokens"));
}

TEST_CASE("resume: nothing to continue once finished, cut inside an event, or not understood") {
  proxy::stream_resume r;
  auto body = R"({"stream":true,"max_tokens":2,"messages":[{"role":"user","content":"hi"}]})";
  SUBCASE("a finish_reason") {
    REQUIRE(r.begin(body, true));
    r.observe(chat_event(" a", "stop"));
    CHECK_FALSE(r.resumable());
  }
  SUBCASE("[DONE]") {
    REQUIRE(r.begin(body, true));
    r.observe("data: [DONE]\n\n");
    CHECK_FALSE(r.resumable());
  }
  SUBCASE("every token sent") {
    REQUIRE(r.begin(body, true));
    r.observe(chat_event(" a") + chat_event(" b"));
    CHECK_FALSE(r.resumable());
  }
  SUBCASE("inside an event") {
    REQUIRE(r.begin(body, true));
    r.observe("data: {\"choi");
    CHECK_FALSE(r.resumable());
  }
  SUBCASE("an event that is not JSON") {
    REQUIRE(r.begin(body, true));
    r.observe("data: garbage\n\n" + chat_event(" a"));
    CHECK_FALSE(r.resumable());
  }
}

TEST_CASE("resume: only streamed, single-choice requests with a prompt can be resumed") {
  proxy::stream_resume r;
  CHECK_FALSE(r.begin(R"({"messages":[{"role":"user","content":"hi"}]})", true));  // no stream
  CHECK_FALSE(
      r.begin(R"({"stream":true,"n":2,"messages":[{"role":"user","content":"hi"}]})", true));
  CHECK_FALSE(r.begin(R"({"stream":true,"messages":[]})", true));
  CHECK_FALSE(r.begin(R"({"stream":true,"prompt":[1,2,3]})", false));  // token ids
  CHECK_FALSE(r.begin("not json", true));
  CHECK_FALSE(r.active());
  CHECK(r.begin(R"({"stream":true,"n":1,"prompt":"x"})", false));
}
