// Stream resume: what a streamed OpenAI answer (chat or text completion) has said so far, read
// from the events the client was sent, and the request that continues it on another endpoint
// when its backend fails mid-stream. Chat: the text as a final assistant message with
// continue_final_message (vLLM, SGLang); completions: the prompt with the text appended; either
// way max_tokens is reduced by the tokens already sent. One per request; worker thread only.
#pragma once

#include <boost/json/object.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace meridian::proxy {

class stream_resume {
 public:
  // Starts on a request body: true when it can be resumed (a JSON object asking for a stream of
  // one choice, with messages or a string prompt). `chat`: the chat API (else completions).
  bool begin(std::string_view body, bool chat);
  void reset();
  bool active() const { return active_; }

  // The decoded response payload as relayed to the client, split anywhere.
  void observe(std::string_view payload);
  // Whether a stream cut here can be continued: events read so far were understood, the answer
  // has not finished, and tokens remain to generate.
  bool resumable() const;
  // The body of the request that continues the answer.
  std::string continuation() const;
  const std::string& text() const { return text_; }
  std::size_t tokens() const { return tokens_; }

 private:
  void line(std::string_view l);
  void event();

  static constexpr std::size_t max_event = 1 << 20;
  bool active_ = false, chat_ = false;
  bool finished_ = false;  // a finish_reason or [DONE] was seen
  bool lost_ = false;      // an event could not be read: what was said is not known
  boost::json::object request_;
  std::optional<std::int64_t> max_tokens_;
  const char* max_key_ = "max_tokens";
  std::string line_, data_;
  std::string text_;
  std::size_t tokens_ = 0;
};

}  // namespace meridian::proxy
