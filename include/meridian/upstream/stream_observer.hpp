// Reads latency and token signals out of a model server's response body as the proxy relays it;
// one instance is used by one request on one worker thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "meridian/common/clock.hpp"

namespace meridian::upstream {

// A pure observer of the decoded (de-chunked) response payload of an OpenAI-compatible server
// (vLLM, SGLang, TGI, Ollama). For text/event-stream it frames events per the WHATWG SSE rules
// and times the data events; for any body it picks up the `usage` token counts. It does no I/O
// and reads no clock: each chunk comes with the time it arrived.
//
// The state is a few scalars whatever the input: nothing is buffered, an event of any size is
// scanned byte by byte, and feed() never allocates or throws.
class stream_observer {
 public:
  // What one feed() call completed.
  struct chunk_result {
    // Data events completed in this chunk, [DONE] excluded.
    std::size_t events = 0;
    // The response's first data event completed in this chunk (its time is first_event()).
    bool first = false;
    // Time since the last earlier chunk that completed a data event, when this chunk completed
    // one and such a chunk exists. Events that complete in the same chunk arrived together as
    // far as the proxy can tell, so they get no gap of their own: the gaps of a response sum to
    // last_event() - first_event(), and events() - 1 tokens came in that time.
    std::optional<common::duration> gap;
  };

  explicit stream_observer(bool sse = false) { reset(sse); }

  // Starts a new response; sse: its Content-Type is text/event-stream, else a plain body
  // (non-streaming JSON), in which only the usage counts are looked for.
  void reset(bool sse) noexcept;
  // The next decoded payload bytes, split anywhere, and when they arrived.
  chunk_result feed(std::string_view payload, common::time_point now) noexcept;

  bool sse() const { return sse_; }
  // When the chunk that completed the first data event (its blank line) arrived. Comments
  // (keep-alive pings), events without data and [DONE] are not data events.
  std::optional<common::time_point> first_event() const { return first_event_; }
  // When the chunk that completed the latest data event arrived.
  std::optional<common::time_point> last_event() const { return last_event_; }
  // Data events so far, [DONE] excluded; an event of several data lines counts once.
  std::size_t events() const { return events_; }
  // Nothing of an event is pending: what follows would start a new one.
  bool at_event_boundary() const {
    return (at_ == where::bom || at_ == where::line_start) && !has_data_;
  }
  // A `data: [DONE]` event was seen (OpenAI's end-of-stream marker).
  bool done_marker() const { return done_marker_; }
  // The integers after the last "prompt_tokens" / "completion_tokens" keys seen (the final usage
  // chunk of a stream wins over any earlier one); nullopt until one is seen.
  std::optional<std::uint64_t> prompt_tokens() const { return prompt_tokens_; }
  std::optional<std::uint64_t> completion_tokens() const { return completion_tokens_; }
  // usage.prompt_tokens_details.cached_tokens: prompt tokens the server took from its prefix
  // cache (vLLM with --enable-prompt-tokens-details, SGLang, OpenAI); nullopt until one is seen.
  std::optional<std::uint64_t> cached_tokens() const { return cached_tokens_; }

 private:
  // Where the next byte falls in the SSE line grammar.
  enum class where : std::uint8_t {
    bom,          // at the very start: an optional UTF-8 byte order mark
    line_start,   // first byte of a line
    name,         // in a field name that matches "data" so far
    value_space,  // after "data:", where one space is dropped
    data,         // in a data line's value
    skip,         // in a comment or a field other than data
  };
  // Where the next byte falls in the search for `"key" : digits`.
  enum class usage_at : std::uint8_t { idle, key, colon, value_start, digits };
  enum class usage_key : std::uint8_t { none, prompt, completion, cached };

  void sse_byte(unsigned char c, common::time_point now, chunk_result& r);
  void line_start(unsigned char c, common::time_point now, chunk_result& r);
  void end_line(unsigned char c);
  void begin_data_line();
  void data_byte(unsigned char c);
  void dispatch(common::time_point now, chunk_result& r);
  void usage_byte(unsigned char c);
  void usage_key_byte(unsigned char c);
  void usage_commit();

  bool sse_ = false;
  // Line framing: a CR ends a line, and a LF right after it belongs to the same line end.
  where at_ = where::bom;
  bool after_cr_ = false;
  std::uint8_t matched_ = 0;  // bytes of the BOM or of "data" matched
  // The event being read: whether it has a data line, and how much of its data is "[DONE]"
  // (-1: it is not).
  bool has_data_ = false;
  std::int8_t done_matched_ = 0;

  std::size_t events_ = 0;
  bool done_marker_ = false;
  std::optional<common::time_point> first_event_;
  std::optional<common::time_point> last_event_;

  usage_at usage_at_ = usage_at::idle;
  usage_key usage_key_ = usage_key::none;
  std::uint8_t candidates_ = 0;  // bit k: usage key k still matches
  std::uint8_t key_matched_ = 0;
  bool usage_overflow_ = false;
  std::uint64_t usage_value_ = 0;
  std::optional<std::uint64_t> prompt_tokens_;
  std::optional<std::uint64_t> completion_tokens_;
  std::optional<std::uint64_t> cached_tokens_;
};

}  // namespace meridian::upstream
