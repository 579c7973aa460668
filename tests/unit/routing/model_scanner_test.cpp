#include "meridian/routing/model_scanner.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "meridian/routing/route_table.hpp"

using meridian::routing::model_scanner;
using st = model_scanner::state;

namespace {
struct result {
  st state;
  bool has_model;
  std::string model;
  bool operator==(const result&) const = default;
};

// Feeds `text` in pieces cut at `cuts` (ascending offsets); finish() only when asked.
result scan(std::string_view text, const std::vector<std::size_t>& cuts = {}, bool finish = false,
            std::size_t max_model = 256) {
  model_scanner s(max_model);
  std::size_t from = 0;
  for (auto cut : cuts) {
    s.feed(text.substr(from, cut - from));
    from = cut;
  }
  s.feed(text.substr(from));
  if (finish) s.finish();
  return {s.current(), s.has_model(), std::string(s.model())};
}

result scan_bytewise(std::string_view text, bool finish = false) {
  model_scanner s;
  for (char c : text) s.feed(std::string_view(&c, 1));
  if (finish) s.finish();
  return {s.current(), s.has_model(), std::string(s.model())};
}

st state_of(std::string_view text) {
  return scan(text, {}, true).state;
}

std::string model_of(std::string_view text) {
  auto r = scan(text, {}, true);
  CHECK(r.state == st::done);
  CHECK(r.has_model);
  return r.model;
}
}  // namespace

TEST_CASE("model_scanner reads the top-level model string") {
  CHECK(model_of(R"({"model":"foo","messages":[]})") == "foo");
  CHECK(model_of(" {\n\t\"messages\" : [ {\"role\":\"user\",\"content\":\"model \\\"x\\\"\"} ] ,"
                 " \"n\": -1.5e+3, \"stream\": true, \"x\": null, \"y\": false, \"z\": 0,"
                 " \"e\": {}, \"a\": [], \"model\" : \"m2\" }\r\n") == "m2");
  auto r = scan(R"({"messages":[]})", {}, true);
  CHECK(r.state == st::done);
  CHECK_FALSE(r.has_model);
  CHECK(state_of("{}") == st::done);
}

TEST_CASE("model_scanner decodes escapes in the model and in keys") {
  CHECK(model_of(R"({"model":"fo\u006f"})") == "foo");
  CHECK(model_of(R"({"model":"a\"b\\c\/d\b\f\n\r\t"})") == "a\"b\\c/d\b\f\n\r\t");
  CHECK(model_of(R"({"model":"\u00e9\u20AC\u0000"})") == std::string("\xc3\xa9\xe2\x82\xac\0", 6));
  CHECK(model_of(R"({"mo\u0064el":"x"})") == "x");
  CHECK(model_of(R"({"\u006d\u006F\u0064\u0065\u006c":"y"})") == "y");
  CHECK(model_of("{\"model\":\"h\xc3\xa9llo \xf0\x9f\x98\x80\"}") ==
        "h\xc3\xa9llo \xf0\x9f\x98\x80");
  // Keys that only start like, or decode to something near, "model" are other keys.
  for (std::string_view other : {R"({"models":"x"})", R"({"mode":"x"})", R"({"Model":"x"})",
                                 R"({"model\u0000":"x"})", R"({"":"x"})"}) {
    CAPTURE(other);
    auto o = scan(other, {}, true);
    CHECK(o.state == st::done);
    CHECK_FALSE(o.has_model);
  }
  CHECK(state_of(R"({"a":"\x"})") == st::invalid);
  CHECK(state_of(R"({"a":"\u12G4"})") == st::invalid);
  CHECK(state_of(R"({"a":"\U1234"})") == st::invalid);
}

TEST_CASE("model_scanner joins surrogate pairs and refuses broken ones") {
  CHECK(model_of(R"({"model":"\ud83d\ude00"})") == "\xf0\x9f\x98\x80");
  CHECK(model_of(R"({"model":"\uDBFF\uDFFF"})") == "\xf4\x8f\xbf\xbf");
  CHECK(state_of(R"({"model":"\ud83d"})") == st::invalid);        // high alone
  CHECK(state_of(R"({"model":"\ud83dx"})") == st::invalid);       // high, then text
  CHECK(state_of(R"({"model":"\ud83d\u0041"})") == st::invalid);  // high, then not low
  CHECK(state_of(R"({"model":"\ud83d\ud83d"})") == st::invalid);  // high, high
  CHECK(state_of(R"({"model":"\ude00"})") == st::invalid);        // low alone
  CHECK(state_of(R"({"x":"\ud83d\n"})") == st::invalid);          // in any string
}

TEST_CASE("model_scanner refuses invalid UTF-8 and raw control characters in strings") {
  for (std::string bad : {"\xc0\x80", "\xc1\xbf", "\xe0\x80\x80", "\xed\xa0\x80",
                          "\xf0\x80\x80\x80", "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xff",
                          "\x80", "\xc3", "\xe2\x82", "\x01", "\n", "\x1f", "\t"}) {
    CAPTURE(bad);
    CHECK(state_of("{\"a\":\"" + bad + "\"}") == st::invalid);
    CHECK(state_of("{\"model\":\"" + bad + "\"}") == st::invalid);
  }
  CHECK(state_of("{\"a\":\"\x7f\xed\x9f\xbf\xee\x80\x80\xf4\x8f\xbf\xbf\"}") == st::done);
  CHECK(state_of("{\"a\":1,\xc3\xa9}") == st::invalid);  // non-ASCII outside a string
}

TEST_CASE("model_scanner reports a second top-level model key, escaped or not") {
  CHECK(state_of(R"({"model":"foo","model":"bar"})") == st::duplicate);
  CHECK(state_of(R"({"model":"foo","mo\u0064el":"bar"})") == st::duplicate);
  CHECK(state_of(R"({"\u006dodel":"foo","model":"foo"})") == st::duplicate);
  CHECK(state_of(R"({"model":5,"model":"bar"})") == st::duplicate);
  CHECK(state_of(R"({"model":"foo","x":{},"model":[1]})") == st::duplicate);
  // Sticky: the decision is made, nothing after it changes it.
  model_scanner s;
  CHECK(s.feed(R"({"model":"a","model")") == st::duplicate);
  CHECK(s.feed(R"(:"b"})") == st::duplicate);
  CHECK(s.finish() == st::duplicate);
  // Duplicates of other keys are the backend's business, and so are nested ones.
  CHECK(state_of(R"({"a":1,"a":2,"model":"m"})") == st::done);
  CHECK(state_of(R"({"meta":{"model":"a","model":"b"},"model":"m"})") == st::done);
}

TEST_CASE("model_scanner ignores nested model keys") {
  auto r =
      scan(R"({"meta":{"model":"inner"},"messages":[{"model":"x"}],"l":["model","y"]})", {}, true);
  CHECK(r.state == st::done);
  CHECK_FALSE(r.has_model);
  CHECK(model_of(R"({"meta":{"model":"inner"},"model":"outer"})") == "outer");
  CHECK(model_of(R"({"meta":{"a":[{"b":{"model":"deep"}}]},"model":"top"})") == "top");
}

TEST_CASE("model_scanner: a model that is not a string is no model, and scanning goes on") {
  for (std::string_view v :
       {"5", "-0.5e3", "null", "true", "false", R"({"name":"x"})", R"(["x"])"}) {
    CAPTURE(v);
    auto r = scan(std::string(R"({"model":)") + std::string(v) + R"(,"rest":"x"})", {}, true);
    CHECK(r.state == st::done);
    CHECK_FALSE(r.has_model);
  }
  CHECK(state_of(R"({"model":5,"rest":})") == st::invalid);  // still validated after it
}

TEST_CASE("model_scanner gives the same answer for any split of the body") {
  const std::vector<std::string> bodies = {
      R"({"model":"fo\u006f","messages":[{"role":"user","content":"hi \ud83d\ude00"}]})",
      R"({"messages":[1,-2.5E-3,true,null,{"k":[]}],"mo\u0064el":"x","model":"y"})",
      R"( {"a" : 10 , "model" : "\u00e9t\u00e9" } )",
      "{\"model\":\"h\xc3\xa9llo\",\"x\":\"\xf0\x9f\x98\x80\"}",
      R"({"model":"abc)",
      R"({"a":01})",
      R"([{"model":"m"}])",
      R"({"a":1}  x)",
      R"({"model":"a\ud83d"})",
  };
  for (const auto& b : bodies) {
    CAPTURE(b);
    for (bool fin : {false, true}) {
      auto whole = scan(b, {}, fin);
      CHECK(scan_bytewise(b, fin) == whole);
      for (std::size_t cut = 0; cut <= b.size(); ++cut) CHECK(scan(b, {cut}, fin) == whole);
    }
  }
}

TEST_CASE("model_scanner: a truncated body stays scanning until finish") {
  for (std::string_view cut :
       {"", "  ", "{", R"({"model")", R"({"model":)", R"({"model":"fo)", R"({"model":"fo\)",
        R"({"model":"fo\u00)", R"({"model":"\ud83d)", R"({"model":"\ud83d\)", R"({"a":[1,2,)",
        R"({"a":tr)", R"({"a":1)", R"({"a":-)", R"({"a":1.5e)", R"({"a":{"b":)",
        "{\"a\":\"\xf0\x9f\x98"}) {
    CAPTURE(cut);
    model_scanner s;
    CHECK(s.feed(cut) == st::scanning);
    CHECK_FALSE(s.has_model());
    CHECK(s.finish() == st::invalid);
  }
  model_scanner s;
  CHECK(s.feed(R"({"model":"foo",)") == st::scanning);
  CHECK(s.has_model());  // seen, but only done (or the caller's own cap) makes it final
  CHECK(s.model() == "foo");
  CHECK(s.feed(R"("x":1})") == st::done);
  CHECK(s.feed(" \r\n\t") == st::done);
  CHECK(s.finish() == st::done);
}

TEST_CASE("model_scanner: garbage is invalid, other JSON values are not_object") {
  for (std::string_view v : {R"([{"model":"m"}])", R"("model")", "42", "-1", "true", "null"}) {
    CAPTURE(v);
    CHECK(state_of(v) == st::not_object);
  }
  for (std::string_view v :
       {"hello",        "\xef\xbb\xbf{}",   R"({model:"x"})", R"({'model':'x'})", R"({"a":1,})",
        R"({"a" 1})",   R"({"a":1 "b":2})", R"({"a":01})",    R"({"a":1.})",      R"({"a":.5})",
        R"({"a":-})",   R"({"a":+1})",      R"({"a":1e})",    R"({"a":0x10})",    R"({"a":tru})",
        R"({"a":nul})", R"({"a":True})",    R"({"a":[1}})",   R"({"a":{]})",      R"({"a":[1,]})",
        R"({,})",       R"({"a":1}x)",      R"({"a":1}{})",   R"({"a":1}})",      "{/*c*/}",
        R"({"a":NaN})", "{\"a\":\"x\x01\"}"}) {
    CAPTURE(v);
    CHECK(state_of(v) == st::invalid);
  }
}

TEST_CASE("model_scanner caps nesting depth") {
  auto nested = [](int levels) {  // the top-level object plus `levels` arrays
    return R"({"a":)" + std::string(levels, '[') + std::string(levels, ']') + R"(,"model":"m"})";
  };
  CHECK(model_of(nested(model_scanner::max_depth - 1)) == "m");
  CHECK(state_of(nested(model_scanner::max_depth)) == st::too_deep);
  CHECK(state_of(R"({"a":)" + std::string(100000, '[')) == st::too_deep);
}

TEST_CASE("model_scanner keeps at most max_model_bytes of model") {
  CHECK(scan(R"({"model":"abcd"})", {}, true, 4).model == "abcd");
  CHECK(scan(R"({"model":"abcde"})", {}, true, 4).state == st::too_long);
  CHECK(scan(R"({"model":"\u00e9\u00e9"})", {}, true, 4).model == "\xc3\xa9\xc3\xa9");
  CHECK(scan(R"({"model":"\u00e9\u00e9\u00e9"})", {}, true, 4).state == st::too_long);
  CHECK(scan(R"({"x":"abcdefgh","model":"ab"})", {}, true, 4).model == "ab");  // only the model
  auto r = scan(R"({"model":")" + std::string(300, 'm') + R"("})", {}, true);
  CHECK(r.state == st::too_long);
  CHECK_FALSE(r.has_model);
}

TEST_CASE("model_scanner reset starts a new body") {
  model_scanner s;
  CHECK(s.feed(R"({"model":"a","model":"b"})") == st::duplicate);
  s.reset();
  CHECK(s.feed(R"({"model":"c"})") == st::done);
  CHECK(s.model() == "c");
  s.reset();
  CHECK(s.current() == st::scanning);
  CHECK_FALSE(s.has_model());
  CHECK(s.model().empty());
}
