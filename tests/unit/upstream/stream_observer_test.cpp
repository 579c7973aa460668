#include "meridian/upstream/stream_observer.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

using meridian::common::duration;
using meridian::common::time_point;
using meridian::upstream::stream_observer;
using namespace std::chrono_literals;

namespace {

const time_point t0 = time_point{} + 1h;

// What a whole response left behind, with each chunk's result.
struct outcome {
  std::size_t events = 0;
  std::optional<time_point> first, last;
  bool done = false;
  std::optional<std::uint64_t> prompt, completion, cached;
  std::vector<duration> gaps;
  std::vector<std::size_t> chunk_events;
  std::size_t first_flags = 0;

  // Everything but the per-chunk view, which depends on the split.
  bool same_totals(const outcome& o) const {
    return events == o.events && done == o.done && prompt == o.prompt &&
           completion == o.completion && cached == o.cached &&
           first.has_value() == o.first.has_value();
  }
};

outcome read(const stream_observer& s) {
  outcome o;
  o.events = s.events();
  o.first = s.first_event();
  o.last = s.last_event();
  o.done = s.done_marker();
  o.prompt = s.prompt_tokens();
  o.completion = s.completion_tokens();
  o.cached = s.cached_tokens();
  return o;
}

// Feeds the pieces in order; piece i arrives at t0 + i * step.
outcome feed_pieces(const std::vector<std::string_view>& pieces, bool sse, duration step = 1ms) {
  stream_observer s(sse);
  std::vector<duration> gaps;
  std::vector<std::size_t> chunk_events;
  std::size_t first_flags = 0;
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    auto r = s.feed(pieces[i], t0 + step * static_cast<int>(i));
    if (r.gap) gaps.push_back(*r.gap);
    chunk_events.push_back(r.events);
    first_flags += r.first;
  }
  outcome o = read(s);
  o.gaps = std::move(gaps);
  o.chunk_events = std::move(chunk_events);
  o.first_flags = first_flags;
  return o;
}

outcome feed_whole(std::string_view text, bool sse = true) {
  return feed_pieces({text}, sse);
}

outcome feed_bytewise(std::string_view text, bool sse = true) {
  std::vector<std::string_view> pieces;
  for (std::size_t i = 0; i < text.size(); ++i) pieces.push_back(text.substr(i, 1));
  return feed_pieces(pieces, sse);
}

std::string replace_all(std::string text, std::string_view from, std::string_view to) {
  for (std::size_t at = text.find(from); at != std::string::npos;
       at = text.find(from, at + to.size()))
    text.replace(at, from.size(), to);
  return text;
}

// A vLLM chat completion stream with stream_options.include_usage: the role chunk, content
// (one quoting usage JSON in its text), the finish chunk, the usage chunk and [DONE].
const std::string vllm_stream =
    R"(data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m",)"
    R"("choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,)"
    R"("finish_reason":null}]}

data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m",)"
    R"("choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m",)"
    R"("choices":[{"index":0,"delta":{"content":" {\"prompt_tokens\": 999}"},"logprobs":null,)"
    R"("finish_reason":null}]}

data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m",)"
    R"("choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}

data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m",)"
    R"("choices":[],"usage":{"prompt_tokens":12,"total_tokens":15,"completion_tokens":3,)"
    R"("prompt_tokens_details":null}}

data: [DONE]

)";

void check_vllm(const outcome& o) {
  CHECK(o.events == 4 + 1);  // role, two content, finish, usage
  CHECK(o.done);
  CHECK(o.prompt == 12u);
  CHECK(o.completion == 3u);
  REQUIRE(o.first);
  CHECK(o.first_flags == 1);
}

}  // namespace

TEST_CASE("stream_observer has constant-size state that owns nothing") {
  // No member can grow with the input: an event of any size costs nothing to hold.
  static_assert(std::is_trivially_copyable_v<stream_observer>);
  static_assert(sizeof(stream_observer) <= 128);
}

TEST_CASE("stream_observer reads a vLLM chat stream fed whole") {
  auto o = feed_whole(vllm_stream);
  check_vllm(o);
  CHECK(o.first == t0);
  CHECK(o.last == t0);
  CHECK(o.chunk_events == std::vector<std::size_t>{5});
  CHECK(o.gaps.empty());  // events of one chunk arrived together
}

TEST_CASE("stream_observer reads a vLLM chat stream fed byte by byte") {
  auto o = feed_bytewise(vllm_stream);
  check_vllm(o);
  // The first event completes at its blank line, the second LF of the first "\n\n".
  const auto first_end = vllm_stream.find("\n\n") + 1;
  CHECK(o.first == t0 + 1ms * static_cast<int>(first_end));
  // The usage event is the last data event; [DONE] is not one.
  const auto usage_end = vllm_stream.find("\n\ndata: [DONE]") + 1;
  CHECK(o.last == t0 + 1ms * static_cast<int>(usage_end));
  CHECK(o.gaps.size() == 4);
  duration sum{};
  for (auto g : o.gaps) sum += g;
  CHECK(sum == *o.last - *o.first);
}

TEST_CASE("stream_observer reads CRLF and CR line ends, split anywhere") {
  for (std::string_view eol : {"\n", "\r\n", "\r"}) {
    CAPTURE(eol.size());
    const std::string text = replace_all(vllm_stream, "\n", eol);
    const auto whole = feed_whole(text);
    check_vllm(whole);
    check_vllm(feed_bytewise(text));
    for (std::size_t cut = 0; cut <= text.size(); ++cut) {
      CAPTURE(cut);
      const std::string_view t = text;
      const auto o = feed_pieces({t.substr(0, cut), t.substr(cut)}, true);
      REQUIRE(o.same_totals(whole));
      CHECK(o.first_flags == 1);
    }
  }
}

TEST_CASE("stream_observer treats a CR then a LF in the next chunk as one line end") {
  // Were the LF its own line end, the CR-terminated data line would be followed by a blank line.
  auto o = feed_pieces({"data: a\r", "\ndata: b\r\n", "\r", "\n"}, true);
  CHECK(o.events == 1);
  CHECK(o.chunk_events == std::vector<std::size_t>{0, 0, 1, 0});
  CHECK(o.first == t0 + 2ms);
}

TEST_CASE("stream_observer does not take keep-alive comments or empty events for a token") {
  stream_observer s(true);
  auto r = s.feed(": ping\n\n:\n\nevent: message\nid: 7\nretry: 100\n\n", t0);
  CHECK(r.events == 0);
  CHECK_FALSE(r.first);
  CHECK_FALSE(s.first_event());
  r = s.feed(": ping\r\n\r\n", t0 + 1s);
  CHECK_FALSE(s.first_event());
  r = s.feed("event: message\ndata: {\"choices\":[]}\n\n", t0 + 5s);
  CHECK(r.first);
  CHECK(r.events == 1);
  CHECK_FALSE(r.gap);
  CHECK(s.first_event() == t0 + 5s);
  // A ping between tokens is not a token either.
  r = s.feed(": ping\n\n", t0 + 6s);
  CHECK(r.events == 0);
  CHECK_FALSE(r.gap);
  CHECK(s.last_event() == t0 + 5s);
}

TEST_CASE("stream_observer times the first event by the chunk that completed it") {
  stream_observer s(true);
  auto r = s.feed("data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}", t0);
  CHECK_FALSE(r.first);
  r = s.feed("\n", t0 + 1s);
  CHECK_FALSE(r.first);
  CHECK_FALSE(s.first_event());
  r = s.feed("\n", t0 + 2s);
  CHECK(r.first);
  CHECK(s.first_event() == t0 + 2s);
  CHECK(s.events() == 1);
}

TEST_CASE("stream_observer reports one gap per chunk that completes events") {
  stream_observer s(true);
  constexpr std::string_view ev = "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n";
  const std::string two = std::string(ev) + std::string(ev);

  auto r = s.feed(ev, t0);
  CHECK(r.first);
  CHECK_FALSE(r.gap);
  r = s.feed(ev, t0 + 30ms);
  CHECK(r.gap == duration(30ms));
  r = s.feed(": keep-alive\n\n", t0 + 40ms);
  CHECK_FALSE(r.gap);
  r = s.feed(two, t0 + 80ms);  // two tokens in one read: one gap, from the last earlier event
  CHECK(r.events == 2);
  CHECK(r.gap == duration(50ms));
  r = s.feed(ev.substr(0, 10), t0 + 100ms);
  CHECK_FALSE(r.gap);
  r = s.feed(ev.substr(10), t0 + 200ms);  // the gap ends when the event completes
  CHECK(r.gap == duration(120ms));
  r = s.feed("data: [DONE]\n\n", t0 + 210ms);
  CHECK(r.events == 0);
  CHECK_FALSE(r.gap);
  CHECK(s.done_marker());

  CHECK(s.events() == 5);
  CHECK(s.first_event() == t0);
  CHECK(s.last_event() == t0 + 200ms);
  // Tokens per second: (events - 1) over last - first.
  CHECK(meridian::common::seconds_between(*s.first_event(), *s.last_event()) ==
        doctest::Approx(0.2));
}

TEST_CASE("stream_observer finds usage split across chunks") {
  const std::string text =
      "data: {\"choices\":[],\"usage\":{\"prompt_tokens\" : 1234,\n"
      "data: \"completion_tokens\":\t56789}}\n\n";
  const std::string_view t = text;
  for (std::size_t a = 0; a <= t.size(); ++a) {
    for (std::size_t b = a; b <= t.size(); b += 7) {
      CAPTURE(a);
      CAPTURE(b);
      auto o = feed_pieces({t.substr(0, a), t.substr(a, b - a), t.substr(b)}, true);
      REQUIRE(o.prompt == 1234u);
      REQUIRE(o.completion == 56789u);
      REQUIRE(o.events == 1);
    }
  }
}

TEST_CASE("stream_observer finds usage at the end of a JSON body split at every offset") {
  const std::string body =
      R"({"id":"chatcmpl-9","object":"chat.completion","created":1,"model":"m","choices":[)"
      R"({"index":0,"message":{"role":"assistant","content":"say \"prompt_tokens\":1"},)"
      R"("finish_reason":"stop"}],"usage":{"prompt_tokens":17,"total_tokens":42,)"
      R"("completion_tokens":25,"prompt_tokens_details":{"cached_tokens":16}}})"
      "\n";
  const std::string_view t = body;
  for (std::size_t cut = 0; cut <= t.size(); ++cut) {
    CAPTURE(cut);
    auto o = feed_pieces({t.substr(0, cut), t.substr(cut)}, false);
    REQUIRE(o.prompt == 17u);
    REQUIRE(o.completion == 25u);
    REQUIRE(o.cached == 16u);
    REQUIRE(o.events == 0);
    REQUIRE_FALSE(o.first);
  }
  auto o = feed_bytewise(body, false);
  CHECK(o.prompt == 17u);
  CHECK(o.completion == 25u);
  // A plain body is not framed: SSE-looking text in it is no event.
  o = feed_whole("data: {\"x\":1}\n\ndata: [DONE]\n\n", false);
  CHECK(o.events == 0);
  CHECK_FALSE(o.done);
}

TEST_CASE("stream_observer leaves usage unset when there is none") {
  auto o = feed_whole("data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n");
  CHECK(o.events == 1);
  CHECK_FALSE(o.prompt);
  CHECK_FALSE(o.completion);
  CHECK_FALSE(o.cached);
  o = feed_whole(R"({"choices":[{"message":{"content":"prompt_tokens: 3"}}]})", false);
  CHECK_FALSE(o.prompt);
  CHECK_FALSE(o.completion);
  // Keys that share a start with the ones looked for are not them.
  o = feed_whole(R"({"usage":{"cached":1,"completion":2,"cache_tokens":3,"prompt":4,)"
                 R"("ccached_tokens":5,"completion_tokenz":6}})",
                 false);
  CHECK_FALSE(o.prompt);
  CHECK_FALSE(o.completion);
  CHECK_FALSE(o.cached);
  // A key that breaks off may be followed at once by one that matches.
  o = feed_whole(R"({"cach"cached_tokens":7,"complet"completion_tokens":8})", false);
  CHECK(o.cached == 7u);
  CHECK(o.completion == 8u);
  o = feed_whole("", false);
  CHECK_FALSE(o.prompt);
}

TEST_CASE("stream_observer takes only unsigned integers that fit, and the last one") {
  auto usage = [](std::string_view json) { return feed_whole(json, false).prompt; };
  CHECK(usage(R"({"prompt_tokens":0})") == 0u);
  CHECK(usage(R"({"prompt_tokens" :
     7 })") == 7u);
  CHECK(usage(R"({"prompt_tokens":18446744073709551615})") == 18446744073709551615u);
  CHECK_FALSE(usage(R"({"prompt_tokens":18446744073709551616})"));
  CHECK_FALSE(usage(R"({"prompt_tokens":99999999999999999999999999999999999999})"));
  CHECK_FALSE(usage(R"({"prompt_tokens":-3})"));
  CHECK_FALSE(usage(R"({"prompt_tokens":3.5})"));
  CHECK_FALSE(usage(R"({"prompt_tokens":3e2})"));
  CHECK_FALSE(usage(R"({"prompt_tokens":"3"})"));
  CHECK_FALSE(usage(R"({"prompt_tokens":null})"));
  CHECK_FALSE(usage(R"({"prompt_tokens_details":{"cached_tokens":3}})"));
  CHECK_FALSE(usage(R"({"x_prompt_tokens":3})"));
  CHECK_FALSE(usage(R"({"content":"\"prompt_tokens\":3"})"));
  CHECK(usage(R"({"prompt_tokens":5,"usage":{"prompt_tokens":6}})") == 6u);
  // An overflowing value leaves the earlier one in place.
  CHECK(usage(R"([{"prompt_tokens":5},{"prompt_tokens":184467440737095516150}])") == 5u);
  // The quote that breaks a match may open the key.
  CHECK(usage(R"(""prompt_tokens":8})") == 8u);
  CHECK(usage(R"("prompt_tokens""prompt_tokens":9})") == 9u);

  auto o = feed_whole(
      "data: {\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1}}\n\n"
      "data: {\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}\n\n");
  CHECK(o.completion == 2u);
}

TEST_CASE("stream_observer does not let a usage key span two events or other fields") {
  auto o = feed_whole("data: {\"prompt_tokens\"\n\ndata: :5}\n\n");
  CHECK_FALSE(o.prompt);
  // Data lines of one event join with a LF, whatever fields come between them.
  o = feed_whole("data: {\"prompt_tokens\"\nid: 1\ndata: :5}\n\n");
  CHECK(o.prompt == 5u);
  CHECK(o.events == 1);
}

TEST_CASE("stream_observer recognises [DONE] exactly") {
  CHECK(feed_whole("data:[DONE]\n\n").done);
  CHECK(feed_whole("data: [DONE]\r\n\r\n").done);
  CHECK(feed_pieces({"data: [DO", "NE]", "\n", "\n"}, true).done);
  for (std::string_view not_done :
       {"data:  [DONE]\n\n", "data: [DONE] \n\n", "data: [DONE]x\n\n", "data: [DON\n\n",
        "data: [done]\n\n", "data: [DONE]\ndata: more\n\n", "data:\ndata: [DONE]\n\n"}) {
    CAPTURE(not_done);
    auto o = feed_whole(not_done);
    CHECK_FALSE(o.done);
    CHECK(o.events == 1);
  }
  // [DONE] is no token: it neither starts nor extends the stream's timing.
  auto o = feed_pieces({"data: [DONE]\n\n", "data: x\n\n"}, true);
  CHECK(o.done);
  CHECK(o.events == 1);
  CHECK(o.first == t0 + 1ms);
}

TEST_CASE("stream_observer counts an event of several data lines once") {
  auto o = feed_whole("data: {\"a\":\ndata: 1,\ndata:\"b\":2}\n\n");
  CHECK(o.events == 1);
  o = feed_bytewise("data: x\r\ndata: y\rdata: z\n\r\n");
  CHECK(o.events == 1);
}

TEST_CASE("stream_observer follows the SSE field rules") {
  CHECK(feed_whole("data\n\n").events == 1);  // a bare field name: data with an empty value
  CHECK(feed_whole("data:\n\n").events == 1);
  CHECK(feed_whole("dat: x\n\ndatax: y\n\nData: z\n\nd\n\n data: w\n\n").events == 0);
  CHECK(feed_whole("event: token\nid: 4\ndata: x\nretry: 5\n\n").events == 1);
  CHECK(feed_whole("\xEF\xBB\xBF"
                   "data: x\n\n")
            .events == 1);
  CHECK(feed_bytewise("\xEF\xBB\xBF"
                      "data: x\n\n")
            .events == 1);
  // A broken BOM spoils only the first line.
  CHECK(feed_whole("\xEF\xBB"
                   "data: x\n\ndata: y\n\n")
            .events == 1);
  // An event that the stream cuts off before its blank line is never dispatched.
  CHECK(feed_whole("data: x\n\ndata: y\n").events == 1);
  CHECK(feed_whole("\n\n\n\r\r\n").events == 0);
}

TEST_CASE("stream_observer scans a huge event without holding it") {
  stream_observer s(true);
  const std::string block(64 * 1024, 'x');
  const std::string quotes(64 * 1024, '"');
  s.feed("data: ", t0);
  for (int i = 0; i < 16; ++i) s.feed(i % 2 ? block : quotes, t0);  // 1 MiB, no line end
  CHECK(s.events() == 0);
  auto r = s.feed("\n\n", t0 + 1s);
  CHECK(r.first);
  CHECK(s.events() == 1);
  // A 1 MiB comment or unknown field, and a 1 MiB run of digits after a usage key.
  s.feed(":", t0 + 2s);
  for (int i = 0; i < 16; ++i) s.feed(block, t0 + 2s);
  s.feed("\n\nfoo: ", t0 + 2s);
  for (int i = 0; i < 16; ++i) s.feed(block, t0 + 2s);
  s.feed("\n\ndata: {\"prompt_tokens\":", t0 + 2s);
  const std::string digits(64 * 1024, '9');
  for (int i = 0; i < 16; ++i) s.feed(digits, t0 + 2s);
  r = s.feed("}\n\n", t0 + 3s);
  CHECK(r.events == 1);
  CHECK(r.gap == duration(2s));
  CHECK_FALSE(s.prompt_tokens());
}

TEST_CASE("stream_observer handles a TGI-style stream") {
  const std::string text =
      "data:{\"token\":{\"id\":1,\"text\":\"Hi\",\"logprob\":-0.1,\"special\":false},"
      "\"generated_text\":null,\"details\":null}\n\n"
      "data:{\"token\":{\"id\":2,\"text\":\"!\",\"logprob\":-0.2,\"special\":false},"
      "\"generated_text\":\"Hi!\",\"details\":null}\n\n";
  const std::string_view t = text;
  const auto cut = t.find("\n\n") + 2;
  auto o = feed_pieces({t.substr(0, cut), t.substr(cut)}, true, 25ms);
  CHECK(o.events == 2);
  CHECK(o.first == t0);
  CHECK(o.gaps == std::vector<duration>{25ms});
  CHECK_FALSE(o.done);
}

TEST_CASE("stream_observer reset starts a new response") {
  stream_observer s(true);
  s.feed(vllm_stream.substr(0, vllm_stream.size() / 2), t0);
  s.reset(true);
  CHECK(s.events() == 0);
  CHECK_FALSE(s.first_event());
  CHECK_FALSE(s.last_event());
  CHECK_FALSE(s.done_marker());
  CHECK_FALSE(s.prompt_tokens());
  CHECK_FALSE(s.completion_tokens());
  auto r = s.feed(vllm_stream, t0 + 1s);
  CHECK(r.events == 5);
  CHECK(r.first);
  CHECK(s.first_event() == t0 + 1s);
  CHECK(s.prompt_tokens() == 12u);

  s.reset(false);
  CHECK_FALSE(s.sse());
  s.feed(vllm_stream, t0 + 2s);
  CHECK(s.events() == 0);
  CHECK(s.prompt_tokens() == 12u);  // the usage scan runs over any body
}
