#include "meridian/probe/prometheus_text.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

using meridian::probe::for_each_sample;
using meridian::probe::label_value;
using meridian::probe::max_line_bytes;
using meridian::probe::parse_stats;
using meridian::probe::sample;
using namespace std::literals;

namespace {
struct owned {
  std::string name;
  std::string labels;
  double value;
};

struct result {
  std::vector<owned> samples;
  parse_stats stats;
};

result parse(std::string_view text) {
  result r;
  r.stats = for_each_sample(text, [&](const sample& s) {
    // Every view must lie inside the text it came from.
    CHECK(s.name.data() >= text.data());
    CHECK(s.name.data() + s.name.size() <= text.data() + text.size());
    CHECK(s.labels.data() + s.labels.size() <= text.data() + text.size());
    r.samples.push_back({std::string(s.name), std::string(s.labels), s.value});
  });
  CHECK(r.stats.samples == r.samples.size());
  return r;
}

// The one sample of a one-line text, or a failed check.
owned one(std::string_view line) {
  auto r = parse(line);
  REQUIRE(r.samples.size() == 1);
  CHECK(r.stats.malformed == 0);
  return r.samples[0];
}

bool malformed(std::string_view line) {
  auto r = parse(line);
  return r.samples.empty() && r.stats.malformed == 1;
}

double value_of(std::string_view token) {
  return one("m " + std::string(token)).value;
}

constexpr std::string_view vllm_text =
    R"(# HELP python_gc_objects_collected_total Objects collected during gc
# TYPE python_gc_objects_collected_total counter
python_gc_objects_collected_total{generation="0"} 12741.0
python_gc_objects_collected_total{generation="1"} 1433.0
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 3.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 7.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.4213
# HELP vllm:prompt_tokens_total Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 1.234567e+06
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.001",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.005",model_name="meta-llama/Llama-3.1-8B-Instruct"} 2.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="meta-llama/Llama-3.1-8B-Instruct"} 12.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 12.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.8731
# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{block_size="16",cache_dtype="auto",enable_prefix_caching="True",num_gpu_blocks="27153"} 1.0
)";
}  // namespace

TEST_CASE("prometheus_text reads vLLM's exposition") {
  auto r = parse(vllm_text);
  CHECK(r.stats.malformed == 0);
  REQUIRE(r.samples.size() == 12);
  CHECK(r.samples[0].name == "python_gc_objects_collected_total");
  CHECK(r.samples[0].labels == R"(generation="0")");
  CHECK(r.samples[0].value == 12741.0);
  CHECK(r.samples[2].name == "vllm:num_requests_running");
  CHECK(r.samples[2].labels == R"(engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct")");
  CHECK(r.samples[2].value == 3.0);
  CHECK(label_value(r.samples[2].labels, "model_name") == "meta-llama/Llama-3.1-8B-Instruct");
  CHECK(label_value(r.samples[2].labels, "engine") == "0");
  CHECK(r.samples[5].value == 1234567.0);
  CHECK(r.samples[8].name == "vllm:time_to_first_token_seconds_bucket");
  CHECK(label_value(r.samples[8].labels, "le") == "+Inf");
  CHECK(r.samples[10].value == doctest::Approx(0.8731));
  CHECK(label_value(r.samples[11].labels, "num_gpu_blocks") == "27153");
}

TEST_CASE("prometheus_text skips comments and blank lines without counting them") {
  auto r = parse("# HELP x y\n\n   \n\t\n#TYPE x gauge\n  # indented comment\nx 1\n\r\n# last");
  CHECK(r.stats.malformed == 0);
  REQUIRE(r.samples.size() == 1);
  CHECK(r.samples[0].name == "x");
  // A comment's content is never read, whatever it holds.
  CHECK(parse("# \xff\x00{{\"\\ garbage\n"sv).stats.malformed == 0);
}

TEST_CASE("prometheus_text reads empty input as nothing") {
  for (std::string_view text : {"", "\n", "\n\n\n", "\r\n", " "}) {
    CAPTURE(text);
    auto r = parse(text);
    CHECK(r.samples.empty());
    CHECK(r.stats.malformed == 0);
  }
}

TEST_CASE("prometheus_text metric names") {
  CHECK(one("a 1").name == "a");
  CHECK(one("_a:b_9:: 1").name == "_a:b_9::");
  CHECK(one(":x 1").name == ":x");
  CHECK(one("  \tx 1").name == "x");  // exporters do not indent, but expfmt allows it
  CHECK(one("x{} 1").labels.empty());
  CHECK(one("x {a=\"b\"} 1").labels == "a=\"b\"");
  CHECK(one("x{a=\"b\"}1").value == 1);
  for (std::string_view bad : {"9x 1", "x-y 1", "x.y 1", "x-1", "x", "x ", "x{}", "{a=\"b\"} 1",
                               "\xc3\xa9 1", "x\xc3\xa9 1", "\"x\" 1"}) {
    CAPTURE(bad);
    CHECK(malformed(bad));
  }
}

TEST_CASE("prometheus_text values as Go's ParseFloat reads them") {
  CHECK(value_of("0") == 0);
  CHECK(value_of("42") == 42);
  CHECK(value_of("-3") == -3);
  CHECK(value_of("+3") == 3);
  CHECK(value_of("3.25") == 3.25);
  CHECK(value_of(".5") == 0.5);
  CHECK(value_of("5.") == 5);
  CHECK(value_of("1e3") == 1000);
  CHECK(value_of("1.5E-3") == doctest::Approx(0.0015));
  CHECK(value_of("-2.5e+2") == -250);
  CHECK(value_of("3e-05") == doctest::Approx(3e-5));
  CHECK(value_of("1.7976931348623157e+308") == std::numeric_limits<double>::max());
  CHECK(value_of("4.9e-324") > 0);
  CHECK(std::isnan(value_of("NaN")));
  CHECK(std::isnan(value_of("nan")));
  CHECK(value_of("+Inf") == std::numeric_limits<double>::infinity());
  CHECK(value_of("-Inf") == -std::numeric_limits<double>::infinity());
  CHECK(value_of("Inf") == std::numeric_limits<double>::infinity());
  CHECK(value_of("+infinity") == std::numeric_limits<double>::infinity());
  for (std::string_view bad : {"",      "abc",  "1e",     "1e+",   "--1",      "+-1",  "-+1",
                               "+NaN",  "-nan", "nan(1)", "infin", "Infinite", "0x10", "1_000",
                               "1.2.3", ".",    "-",      "1e400", "-1e400",   "1,5",  "١"}) {
    CAPTURE(bad);
    CHECK(malformed("m " + std::string(bad)));
  }
}

TEST_CASE("prometheus_text accepts and ignores a timestamp") {
  CHECK(one("m 7 1700000000000").value == 7);
  CHECK(one("m{a=\"b\"} 7 -1").value == 7);
  CHECK(one("m 7 +5").value == 7);
  CHECK(one("m 7 9223372036854775807 \t").value == 7);
  for (std::string_view bad : {"m 7 1.5", "m 7 abc", "m 7 1 2", "m 7 9223372036854775808",
                               "m 7 +-1", "m 7 ++1", "m 7 1e3", "m 7 -"}) {
    CAPTURE(bad);
    CHECK(malformed(bad));
  }
}

TEST_CASE("prometheus_text label sets") {
  CHECK(one(R"(m{a="1",b="2",} 1)").labels == R"(a="1",b="2",)");
  CHECK(one(R"(m{ a = "1" , b="2" } 1)").labels == R"( a = "1" , b="2" )");
  CHECK(one(R"(m{a=""} 1)").labels == R"(a="")");
  CHECK(one("m{a=\"caf\xc3\xa9 \xf0\x9f\x98\x80\"} 1").value == 1);
  for (std::string_view bad :
       {R"(m{a="1" 1)", R"(m{a="1"}} 1)", R"(m{a=1} 1)", R"(m{a} 1)", R"(m{="1"} 1)", R"(m{,} 1)",
        R"(m{a="1",,b="2"} 1)", R"(m{a="1" b="2"} 1)", R"(m{1a="1"} 1)", R"(m{a:b="1"} 1)",
        R"(m{a='1'} 1)", R"(m{a="1} 1)", "m{a=\"\xff\"} 1", "m{a=\"\xc0\xaf\"} 1",
        "m{a=\"\xed\xa0\x80\"} 1", "m{a=\"\xe2\x82\"} 1"}) {
    CAPTURE(bad);
    CHECK(malformed(bad));
  }
}

TEST_CASE("prometheus_text escapes in label values") {
  // A quoted '}' must not end the set, and an escaped quote must not end the value.
  auto s = one(R"(m{path="/a}b",q="say \"hi\"}",bs="c:\\dir\\",nl="a\nb"} 5)");
  CHECK(s.value == 5);
  CHECK(label_value(s.labels, "path") == "/a}b");
  CHECK(label_value(s.labels, "q") == "say \"hi\"}");
  CHECK(label_value(s.labels, "bs") == "c:\\dir\\");
  CHECK(label_value(s.labels, "nl") == "a\nb");
  CHECK(one(R"(m{a="\\"} 1)").labels == R"(a="\\")");
  for (std::string_view bad : {R"(m{a="\t"} 1)", R"(m{a="\x41"} 1)", R"(m{a="\"} 1)",
                               R"(m{a="x\"} 1)", R"(m{a="\u0041"} 1)"}) {
    CAPTURE(bad);
    CHECK(malformed(bad));
  }
}

TEST_CASE("prometheus_text line ends") {
  auto crlf = parse("# TYPE a gauge\r\na 1\r\nb{x=\"y\"} 2 123\r\n\r\n");
  CHECK(crlf.stats.malformed == 0);
  REQUIRE(crlf.samples.size() == 2);
  CHECK(crlf.samples[1].labels == "x=\"y\"");
  CHECK(crlf.samples[1].value == 2);
  // The last line needs no terminator.
  auto open_end = parse("a 1\nb 2");
  REQUIRE(open_end.samples.size() == 2);
  CHECK(open_end.samples[1].value == 2);
  // A bare CR is not a line end; only the one before LF is dropped.
  CHECK(malformed("a 1\rb 2"));
  CHECK(malformed("a 1\r\r"));
}

TEST_CASE("prometheus_text truncated bodies keep their complete lines") {
  const std::string full = R"(a{model_name="m"} 1
b{model_name="m"} 2
c{model_name="m"} 3
)";
  // Cut at every byte: the lines before the cut parse, the cut one is the only loss.
  for (std::size_t cut = 0; cut <= full.size(); ++cut) {
    CAPTURE(cut);
    auto r = parse(std::string_view(full).substr(0, cut));
    CHECK(r.stats.samples + r.stats.malformed <= 3);
    CHECK(r.stats.malformed <= 1);
    for (std::size_t i = 0; i < r.samples.size(); ++i) CHECK(r.samples[i].value == double(i + 1));
  }
  auto r = parse("a 1\nb{model_name=\"meta-lla");
  CHECK(r.samples.size() == 1);
  CHECK(r.stats.malformed == 1);
}

TEST_CASE("prometheus_text refuses lines over max_line_bytes") {
  const std::string prefix = "m{a=\"";
  const std::string suffix = "\"} 1";
  const std::string fits =
      prefix + std::string(max_line_bytes - prefix.size() - suffix.size(), 'x') + suffix;
  REQUIRE(fits.size() == max_line_bytes);
  CHECK(one(fits + "\r\n").value == 1);  // the cap is on the content, CRLF not included
  const std::string over = prefix + std::string(max_line_bytes, 'x') + suffix;
  auto r = parse("a 1\n" + over + "\nb 2\n");
  CHECK(r.stats.malformed == 1);
  REQUIRE(r.samples.size() == 2);
  CHECK(r.samples[1].name == "b");
  // Even a comment that long is refused: the cap is on lines, read or not.
  CHECK(parse("# " + std::string(max_line_bytes, 'c')).stats.malformed == 1);
  // A megabyte without a newline is one malformed line.
  CHECK(parse(std::string(1 << 20, 'a')).stats.malformed == 1);
}

TEST_CASE("prometheus_text counts garbage as malformed and finds nothing in it") {
  const std::string_view html = R"(<!DOCTYPE html>
<html>
<head><title>502 Bad Gateway</title></head>
<body>
<center><h1>502 Bad Gateway</h1></center>
<hr><center>nginx</center>
</body>
</html>
)";
  auto r = parse(html);
  CHECK(r.samples.empty());
  CHECK(r.stats.malformed == 8);

  auto json = parse(R"({"object":"error","message":"Not Found","code":404})");
  CHECK(json.samples.empty());
  CHECK(json.stats.malformed == 1);

  const std::string binary("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\n\xff\xfe{}\x00\"\\", 18);
  auto b = parse(binary);
  CHECK(b.samples.empty());
  CHECK(b.stats.malformed == 2);

  // Garbage between good lines costs only its own lines.
  auto mixed = parse("a 1\n<p>oops</p>\nb 2\n\x00\x01\n"sv);
  CHECK(mixed.samples.size() == 2);
  CHECK(mixed.stats.malformed == 2);
}

TEST_CASE("label_value") {
  const std::string_view labels = R"(engine="0",model_name="Qwen/Qwen2.5-7B-Instruct",model="x")";
  CHECK(label_value(labels, "model_name") == "Qwen/Qwen2.5-7B-Instruct");
  CHECK(label_value(labels, "model") == "x");
  CHECK(label_value(labels, "engine") == "0");
  CHECK_FALSE(label_value(labels, "mode"));
  CHECK_FALSE(label_value(labels, "model_name_"));
  CHECK_FALSE(label_value(labels, ""));
  CHECK_FALSE(label_value("", "model_name"));
  CHECK(label_value(R"(a="")", "a") == "");
  CHECK(label_value(R"( a = "1" , )", "a") == "1");
  CHECK(label_value(R"(a="first",a="second")", "a") == "first");
  // Not a well-formed list: no answer, even for a label before the fault.
  CHECK_FALSE(label_value(R"(a="1",b=)", "a"));
  CHECK_FALSE(label_value(R"(a="1"})", "a"));
  CHECK_FALSE(label_value(R"({a="1"})", "a"));
  CHECK_FALSE(label_value(R"(a="1)", "a"));
  CHECK_FALSE(label_value(R"(a="\q")", "a"));
  CHECK_FALSE(label_value("a=\"\xff\"", "a"));
}
