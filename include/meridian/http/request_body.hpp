// The framing of one request body as its raw bytes arrive in the connection's buffer: checks
// every buffered byte before any of it is forwarded (chunk syntax, the size limit), decodes it
// into payload spans for forwarding, and says when the whole body is in the buffer. No I/O:
// the connection reads, this decides. One per connection, used by its worker thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "meridian/http/chunked.hpp"
#include "meridian/http/parser.hpp"

namespace meridian::http {

class request_body {
 public:
  enum class status { more, complete, malformed, too_large };

  void start(body_kind kind, std::uint64_t content_length, std::uint64_t max_payload);
  body_kind kind() const { return kind_; }

  // Checks the raw bytes buffered so far (`raw` starts at the first unconsumed body byte and
  // grows between calls); validation resumes where it stopped.
  status validate(std::string_view raw);
  status current() const { return status_; }
  // Raw bytes from the start of `raw` that passed validation.
  std::size_t validated() const { return validated_; }
  bool complete() const { return status_ == status::complete; }
  std::string_view error() const { return error_; }
  std::uint64_t payload_bytes() const { return payload_; }

  // Decodes validated bytes into at most `max_spans` payload spans (views into `raw`), for
  // forwarding as they are. Returns the raw bytes used, which the caller consumes.
  std::size_t take(std::string_view raw, std::string_view* spans, std::size_t max_spans,
                   std::size_t& n_spans);
  // The body was complete in the buffer and has been forwarded whole: nothing is left to take.
  void consume_all() {
    validated_ = 0;
    taken_all_ = true;
  }
  // True when every byte of the body has been taken.
  bool finished() const { return complete() && validated_ == 0 && taken_all_; }

 private:
  body_kind kind_ = body_kind::none;
  std::uint64_t left_ = 0;  // content-length bytes not yet validated
  std::uint64_t max_ = 0;
  std::uint64_t payload_ = 0;
  std::size_t validated_ = 0;
  chunked_decoder check_;  // runs ahead over the buffered bytes
  chunked_decoder take_;   // decodes what is forwarded
  status status_ = status::complete;
  bool taken_all_ = true;
  std::string_view error_;
};

// Decodes a complete, validated chunked body in `raw` from its start, calling f(span) per
// payload span (a body kept whole in the buffer can be sent more than once: retries).
template <class F>
void for_each_chunk(std::string_view raw, F&& f) {
  chunked_decoder dec;
  while (!raw.empty() && !dec.done() && !dec.failed()) {
    auto st = dec.decode(raw);
    if (!st.data.empty()) f(st.data);
    raw.remove_prefix(st.consumed);
    if (st.consumed == 0) break;
  }
}

}  // namespace meridian::http
