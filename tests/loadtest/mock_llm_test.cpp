#include <doctest/doctest.h>

#include <boost/json.hpp>
#include <thread>
#include <vector>

#include "load/load.hpp"
#include "load/sse.hpp"
#include "mock/llm_openai.hpp"
#include "mock/mock.hpp"
#include "test_util.hpp"

using namespace meridian::loadtest;
namespace json = boost::json;

namespace {
llm_options fast_mock(int slots, double decode_ms) {
  llm_options o;
  o.listen = "127.0.0.1:0";
  o.engine.slots = slots;
  o.engine.decode_ms = decode_ms;
  o.engine.decode_growth = 0;
  o.engine.prefill_us_per_token = 0;
  o.name = "m1";
  o.model = "test-model";
  return o;
}

// Mean e2e latency of a closed-loop run with `conc` connections, each sending chat requests of 10
// tokens.
double mean_latency_ms(std::uint16_t port, int conc) {
  load_config c;
  c.url = "http://127.0.0.1:" + std::to_string(port) + "/";
  c.api = openai_api::chat;
  c.max_tokens = *int_dist::parse("fixed:10");
  c.prompt_tokens = *int_dist::parse("fixed:32");
  c.closed = true;
  c.connections = conc;
  c.max_requests = static_cast<std::uint64_t>(conc) * 3;
  c.duration_s = 10;
  c.quiet = true;
  c.progress = 0;
  REQUIRE(c.finalize().empty());
  auto s = run_load(c);
  CHECK(s.failed == 0);
  CHECK(s.completed == c.max_requests);
  return s.e2el.mean() / 1e6;
}

json::object control(llm_mock& m) {
  return json::parse(m.control_json()).as_object();
}
std::uint64_t counter(llm_mock& m, const char* name) {
  return control(m)["counters"].as_object()[name].to_number<std::uint64_t>();
}
}  // namespace

TEST_CASE(
    "mock engine queues like an M/D/c server: latency grows with concurrency beyond the slots") {
  llm_mock one(fast_mock(1, 4));  // service time ~ 10 tokens * 4 ms = 40 ms
  const auto p1 = one.start();
  const double alone = mean_latency_ms(p1, 1);
  const double four = mean_latency_ms(p1, 4);
  CHECK(alone == doctest::Approx(40).epsilon(0.35));
  // Four clients on one slot: each request waits for the other three -> ~4x the service time.
  CHECK(four > 3.0 * alone);
  CHECK(four < 5.5 * alone);

  llm_mock wide(fast_mock(4, 4));
  const auto p4 = wide.start();
  const double four_slots = mean_latency_ms(p4, 4);
  CHECK(four_slots < 1.6 * alone);  // enough slots: no queueing
}

TEST_CASE("streaming responses look like vLLM's chat.completion.chunk SSE") {
  llm_mock m(fast_mock(2, 1));
  const auto port = m.start();
  test::client c(port);
  auto r = c.request(
      "POST", "/v1/chat/completions",
      R"({"model":"test-model","messages":[{"role":"user","content":"hello hello hello"}],)"
      R"("max_tokens":4,"stream":true,"stream_options":{"include_usage":true}})");
  REQUIRE(r.ok);
  CHECK(r.status == 200);
  CHECK(r.header("content-type").starts_with("text/event-stream"));
  CHECK(r.header("transfer-encoding") == "chunked");
  CHECK(r.header("x-mock-backend") == "m1");
  sse_parser p;
  std::vector<std::string> ev;
  p.feed(r.body, [&](std::string_view e) { ev.emplace_back(e); });
  REQUIRE(ev.size() == 1 + 4 + 1 + 1);  // role, 4 tokens, usage, [DONE]
  CHECK(ev.back() == "[DONE]");
  std::string id;
  for (std::size_t i = 0; i + 1 < ev.size(); ++i) {
    auto o = json::parse(ev[i]).as_object();
    CHECK(o["object"].as_string() == "chat.completion.chunk");
    CHECK(o["model"].as_string() == "test-model");
    CHECK(o["created"].is_int64());
    if (id.empty()) id = std::string(o["id"].as_string());
    CHECK(o["id"].as_string() == id);
    auto& ch = o["choices"].as_array();
    if (i == 0) {
      CHECK(ch[0].as_object().at("delta").as_object().at("role").as_string() == "assistant");
    } else if (i <= 4) {
      auto& c0 = ch[0].as_object();
      CHECK(c0.at("index").as_int64() == 0);
      CHECK(!c0.at("delta").as_object().at("content").as_string().empty());
      if (i < 4)
        CHECK(c0.at("finish_reason").is_null());
      else
        CHECK(c0.at("finish_reason").as_string() == "length");
    } else {
      CHECK(ch.empty());
      auto& u = o["usage"].as_object();
      CHECK(u["completion_tokens"].as_int64() == 4);
      CHECK(u["total_tokens"].as_int64() == u["prompt_tokens"].as_int64() + 4);
    }
  }
  // Keep-alive: the same connection serves a non-streaming request next.
  auto n =
      c.request("POST", "/v1/chat/completions",
                R"({"messages":[{"role":"user","content":"hi there"}],"max_completion_tokens":3})");
  REQUIRE(n.ok);
  auto o = json::parse(n.body).as_object();
  CHECK(o["object"].as_string() == "chat.completion");
  auto& msg = o["choices"].as_array()[0].as_object()["message"].as_object();
  CHECK(msg["role"].as_string() == "assistant");
  CHECK(!msg["content"].as_string().empty());
  CHECK(o["usage"].as_object()["completion_tokens"].as_int64() == 3);
  CHECK(o["choices"].as_array()[0].as_object()["finish_reason"].as_string() == "length");

  auto comp = c.request("POST", "/v1/completions", R"({"prompt":"abc","max_tokens":2})");
  CHECK(json::parse(comp.body).as_object()["object"].as_string() == "text_completion");
  auto emb = c.request("POST", "/v1/embeddings", R"({"input":["a","b"]})");
  CHECK(json::parse(emb.body).as_object()["data"].as_array().size() == 2);
  auto models = c.request("GET", "/v1/models");
  CHECK(json::parse(models.body).as_object()["data"].as_array()[0].as_object()["id"].as_string() ==
        "test-model");
  auto bad = c.request("POST", "/v1/chat/completions", "{");
  CHECK(bad.status == 400);
  CHECK(json::parse(bad.body).as_object()["error"].is_object());
  auto metrics = c.request("GET", "/metrics");
  for (const char* name :
       {"vllm:num_requests_waiting{model_name=\"test-model\"}", "vllm:num_requests_running",
        "vllm:kv_cache_usage_perc", "vllm:time_to_first_token_seconds_bucket",
        "mock_abandoned_total", "mock_generation_stopped_total"})
    CHECK_MESSAGE(metrics.body.find(name) != std::string::npos, name);
  CHECK(c.request("GET", "/health").status == 200);
  auto st = c.request("GET", "/static");
  CHECK(st.body == "Hello, World!");
}

TEST_CASE("control endpoint injects errors and stalls; abandoned requests stop generating") {
  llm_mock m(fast_mock(1, 5));
  const auto port = m.start();
  auto set = test::post(port, "/control", R"({"error_rate":1.0})");
  CHECK(set.status == 200);
  auto e =
      test::post(port, "/v1/chat/completions", R"({"messages":[{"role":"user","content":"x"}]})");
  CHECK(e.status == 500);
  CHECK(json::parse(e.body).as_object()["error"].as_object()["message"].is_string());
  CHECK(test::post(port, "/control", R"({"error_rate":0,"nonsense":1})").status == 400);
  CHECK(test::post(port, "/control", R"({"error_rate":0})").status == 200);

  // Stall: /static does not answer until the stall ends.
  CHECK(test::post(port, "/control", R"({"stall_ms":250})").status == 200);
  auto stalled = test::get(port, "/static");
  CHECK(stalled.status == 200);
  CHECK(stalled.elapsed_ms >= 150);

  // A client that hangs up mid-stream is counted, and its generation is cancelled.
  {
    test::client c(port);
    c.send_all(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 83\r\n\r\n"
        R"({"messages":[{"role":"user","content":"abc"}],"max_tokens":2000,"stream":true}     )");
    CHECK(!c.read_some().empty());  // head + first tokens arrive
  }
  bool seen = false;
  for (int i = 0; i < 200 && !seen; ++i) {
    seen = counter(m, "abandoned_total") == 1 && counter(m, "generation_stopped_total") == 1 &&
           control(m)["engine"].as_object()["running"].to_number<int>() == 0;
    if (!seen)
      std::this_thread::sleep_for(
          std::chrono::milliseconds(10));  // polling another thread's counters
  }
  CHECK(seen);
}

TEST_CASE("the mock's text is a function of its context: a continuation goes on the same way") {
  using meridian::loadtest::llm::text_generator;
  const std::string prompt = "tell me a story";
  text_generator whole(prompt);
  std::vector<std::string> tokens;
  for (int i = 0; i < 40; ++i) tokens.emplace_back(whole.next());
  // Not a fixed cycle: the words depend on the prompt.
  text_generator other("another prompt");
  std::string a, b;
  for (int i = 0; i < 16; ++i) a += tokens[static_cast<std::size_t>(i)], b += other.next();
  CHECK(a != b);
  // Continued after any prefix of its own answer (the prompt with that prefix appended), the
  // rest comes out token for token.
  for (std::size_t k : {1u, 7u, 23u}) {
    std::string context = prompt;
    for (std::size_t i = 0; i < k; ++i) context += tokens[i];
    text_generator rest(context);
    for (std::size_t i = k; i < tokens.size(); ++i) CHECK(std::string(rest.next()) == tokens[i]);
  }
}
