// Incremental Server-Sent Events parser (data fields only); one per connection, reused across
// requests.
#pragma once
#include <string>
#include <string_view>

namespace meridian::loadtest {

class sse_parser {
 public:
  void reset() {
    line_.clear();
    data_.clear();
    has_data_ = false;
  }
  // Calls on_event(std::string_view data) for each complete event; the view is valid only during
  // the call.
  template <class F>
  void feed(std::string_view in, F&& on_event) {
    while (!in.empty()) {
      auto nl = in.find('\n');
      if (nl == std::string_view::npos) {
        line_.append(in);
        return;
      }
      std::string_view line;
      if (line_.empty()) {
        line = in.substr(0, nl);
      } else {
        line_.append(in.substr(0, nl));
        line = line_;
      }
      in.remove_prefix(nl + 1);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      handle_line(line, on_event);
      line_.clear();
    }
  }

 private:
  template <class F>
  void handle_line(std::string_view line, F& on_event) {
    if (line.empty()) {
      if (has_data_) {
        on_event(std::string_view(data_));
        data_.clear();
        has_data_ = false;
      }
      return;
    }
    if (line.front() == ':') return;  // comment / keep-alive
    auto colon = line.find(':');
    std::string_view field = line.substr(0, colon);
    std::string_view value =
        colon == std::string_view::npos ? std::string_view{} : line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    if (field == "data") {
      if (has_data_) data_.push_back('\n');
      data_.append(value);
      has_data_ = true;
    }
  }
  std::string line_;
  std::string data_;
  bool has_data_ = false;
};

// What one OpenAI streaming chunk carried, extracted without building a DOM on the hot path.
struct openai_chunk_info {
  bool done = false;       // "[DONE]"
  bool has_token = false;  // non-empty delta.content / text
  bool has_usage = false;
  bool is_error = false;
  long prompt_tokens = -1, completion_tokens = -1;
};
openai_chunk_info inspect_openai_chunk(std::string_view data);
// Same for a non-streaming JSON body.
openai_chunk_info inspect_openai_body(std::string_view body);

}  // namespace meridian::loadtest
