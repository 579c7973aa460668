// libFuzzer target for the stream observer: fed whole, in four pieces and byte by byte it agrees
// with a naive reference that splits the whole body into lines and events the way the WHATWG SSE
// rules read them, and its timing follows from which piece completed each event.
// Byte 0 chooses SSE (bit 0); bytes 1-3 choose where to cut; the rest is the body.
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "meridian/upstream/stream_observer.hpp"

using meridian::common::duration;
using meridian::common::time_point;
using meridian::upstream::stream_observer;

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

struct usage {
  std::optional<std::uint64_t> prompt, completion;
};

// The observer's key search, written over a whole buffer: a quote may open a key; at the first
// byte that does not fit, the search starts over at that byte.
void scan_usage(std::string_view s, usage& u) {
  constexpr std::string_view keys[] = {"\"prompt_tokens\"", "\"completion_tokens\""};
  auto ws = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  std::size_t i = 0;
  while (i < s.size()) {
    if (s[i] != '"') {
      ++i;
      continue;
    }
    int k = -1;
    for (int j = 0; j < 2; ++j)
      if (s.substr(i, keys[j].size()) == keys[j]) k = j;
    if (k < 0) {
      // Where the longest matching prefix of a key breaks (at least the byte after the quote).
      std::size_t at = i + 1;
      for (auto key : keys) {
        std::size_t m = 1;
        while (i + m < s.size() && m < key.size() && s[i + m] == key[m]) ++m;
        if (i + m == s.size()) return;  // the body ends inside a key
        if (m > 1) at = i + m;
      }
      i = at;
      continue;
    }
    std::size_t p = i + keys[k].size();
    while (p < s.size() && ws(s[p])) ++p;
    if (p == s.size()) return;
    if (s[p] != ':') {
      i = p;
      continue;
    }
    ++p;
    while (p < s.size() && ws(s[p])) ++p;
    if (p == s.size()) return;
    if (!digit(s[p])) {
      i = p;
      continue;
    }
    std::uint64_t v = 0;
    bool overflow = false;
    for (; p < s.size() && digit(s[p]); ++p) {
      const unsigned d = s[p] - '0';
      if (v > (UINT64_MAX - d) / 10)
        overflow = true;
      else
        v = v * 10 + d;
    }
    if (p == s.size()) return;  // a number is taken only once something ends it
    if (!overflow && s[p] != '.' && s[p] != 'e' && s[p] != 'E')
      (k == 0 ? u.prompt : u.completion) = v;
    i = p;
  }
}

struct reference {
  std::size_t events = 0;
  bool done = false;
  usage u;
  std::vector<std::size_t> event_ends;  // offset of the byte that completed each data event
};

// Splits the whole body into lines and events as the spec describes it, buffering freely.
reference sse_reference(std::string_view body) {
  reference ref;
  std::size_t i = 0;
  if (body.substr(0, 3) == "\xEF\xBB\xBF") i = 3;
  std::string data;
  bool has_data = false;
  while (i <= body.size()) {
    std::size_t e = i;
    while (e < body.size() && body[e] != '\r' && body[e] != '\n') ++e;
    const std::string_view line = body.substr(i, e - i);
    const bool complete = e < body.size();
    if (!complete) {
      // The body ends inside this line: only a data value already under way was scanned.
      if (line.substr(0, 5) == "data:") {
        std::string_view v = line.substr(5);
        if (!v.empty() && v[0] == ' ') v.remove_prefix(1);
        data += v;
      }
      scan_usage(data, ref.u);
      return ref;
    }
    if (line.empty()) {
      if (has_data) {
        if (data == "[DONE]\n") {
          ref.done = true;
        } else {
          ++ref.events;
          ref.event_ends.push_back(e);
        }
      }
      scan_usage(data, ref.u);
      data.clear();
      has_data = false;
    } else if (line[0] != ':') {
      const auto colon = line.find(':');
      const std::string_view name = line.substr(0, colon);
      std::string_view value = colon == std::string_view::npos ? "" : line.substr(colon + 1);
      if (!value.empty() && value[0] == ' ') value.remove_prefix(1);
      if (name == "data") {
        data += value;
        data += '\n';
        has_data = true;
      }
    }
    i = e + 1;
    if (body[e] == '\r' && i < body.size() && body[i] == '\n') ++i;
  }
  return ref;
}

const time_point t0 = time_point{} + std::chrono::hours(1);

// Feeds the body cut at `cuts` (ascending); piece i arrives at t0 + i ms. Checks the timing
// against the reference's event offsets.
void run(std::string_view body, bool sse, const std::vector<std::size_t>& cuts,
         const reference& ref) {
  static stream_observer s;
  s.reset(sse);
  std::vector<std::size_t> bounds = cuts;
  bounds.push_back(body.size());
  std::size_t from = 0, events = 0, firsts = 0, piece = 0;
  std::size_t next_event = 0;
  std::optional<time_point> prev_piece_with_events;
  for (std::size_t to : bounds) {
    const time_point now = t0 + std::chrono::milliseconds(piece++);
    const auto r = s.feed(body.substr(from, to - from), now);
    std::size_t expected = 0;
    while (next_event < ref.event_ends.size() && ref.event_ends[next_event] < to) {
      ++expected;
      ++next_event;
    }
    check(r.events == expected);
    check(r.first == (expected > 0 && events == 0));
    firsts += r.first;
    events += r.events;
    if (expected > 0 && prev_piece_with_events)
      check(r.gap && *r.gap == now - *prev_piece_with_events);
    else
      check(!r.gap);
    if (expected > 0) prev_piece_with_events = now;
    from = to;
  }
  check(s.events() == ref.events && events == ref.events);
  check(firsts == (ref.events > 0 ? 1u : 0u));
  check(s.done_marker() == ref.done);
  check(s.prompt_tokens() == ref.u.prompt);
  check(s.completion_tokens() == ref.u.completion);
  check(s.first_event().has_value() == (ref.events > 0));
  check(s.last_event() == prev_piece_with_events);
  if (!sse) check(s.events() == 0 && !s.done_marker() && !s.first_event());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  if (size < 4) return 0;
  const bool sse = bytes[0] & 1;
  const std::string_view body(reinterpret_cast<const char*>(bytes) + 4, size - 4);
  std::vector<std::size_t> cuts;
  for (int i = 1; i < 4; ++i) cuts.push_back(bytes[i] * body.size() / 255);
  std::sort(cuts.begin(), cuts.end());

  reference ref;
  if (sse) {
    ref = sse_reference(body);
  } else {
    scan_usage(body, ref.u);
  }
  run(body, sse, {}, ref);
  run(body, sse, cuts, ref);
  if (body.size() <= 4096) {
    std::vector<std::size_t> every;
    for (std::size_t i = 1; i < body.size(); ++i) every.push_back(i);
    run(body, sse, every, ref);
  }
  return 0;
}
