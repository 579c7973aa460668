#include "proxy/resume.hpp"

#include <boost/json.hpp>

namespace meridian::proxy {

namespace json = boost::json;

void stream_resume::reset() {
  active_ = chat_ = finished_ = lost_ = false;
  request_.clear();
  max_tokens_.reset();
  line_.clear();
  data_.clear();
  text_.clear();
  tokens_ = 0;
}

bool stream_resume::begin(std::string_view body, bool chat) {
  reset();
  boost::system::error_code ec;
  auto v = json::parse(body, ec);
  if (ec || !v.is_object()) return false;
  auto& o = v.as_object();
  auto* stream = o.if_contains("stream");
  if (!stream || !stream->is_bool() || !stream->as_bool()) return false;
  if (auto* n = o.if_contains("n"); n && !(n->is_int64() && n->as_int64() == 1)) return false;
  if (chat) {
    auto* m = o.if_contains("messages");
    if (!m || !m->is_array() || m->as_array().empty()) return false;
  } else {
    auto* p = o.if_contains("prompt");
    if (!p || !p->is_string()) return false;
  }
  for (const char* key : {"max_completion_tokens", "max_tokens"}) {
    auto* mt = o.if_contains(key);
    if (!mt || mt->is_null()) continue;
    if (!mt->is_int64()) return false;
    max_tokens_ = mt->as_int64();
    max_key_ = key;
    break;
  }
  request_ = std::move(o);
  chat_ = chat;
  active_ = true;
  return true;
}

void stream_resume::observe(std::string_view payload) {
  if (!active_ || lost_) return;
  for (char c : payload) {
    if (c != '\n') {
      if (line_.size() >= max_event) lost_ = true;
      if (lost_) return;
      line_ += c;
      continue;
    }
    if (!line_.empty() && line_.back() == '\r') line_.pop_back();
    line(line_);
    line_.clear();
  }
}

// SSE lines (the observer upstream checks the framing): data lines gather, a blank line ends
// the event; comments and other fields are skipped.
void stream_resume::line(std::string_view l) {
  if (l.empty()) {
    if (!data_.empty()) event();
    data_.clear();
    return;
  }
  if (!l.starts_with("data:")) return;
  l.remove_prefix(5);
  if (l.starts_with(' ')) l.remove_prefix(1);
  if (!data_.empty()) data_ += '\n';
  if (data_.size() + l.size() > max_event) {
    lost_ = true;
    return;
  }
  data_.append(l);
}

void stream_resume::event() {
  if (data_ == "[DONE]") {
    finished_ = true;
    return;
  }
  boost::system::error_code ec;
  auto v = json::parse(data_, ec);
  if (ec || !v.is_object()) {
    lost_ = true;
    return;
  }
  const auto* choices = v.as_object().if_contains("choices");
  if (!choices || !choices->is_array() || choices->as_array().empty()) return;  // usage, etc.
  const auto& ch = choices->as_array()[0];
  if (!ch.is_object()) return;
  const json::value* text = nullptr;
  if (chat_) {
    if (const auto* d = ch.as_object().if_contains("delta"); d && d->is_object())
      text = d->as_object().if_contains("content");
  } else {
    text = ch.as_object().if_contains("text");
  }
  if (text && text->is_string() && !text->as_string().empty()) {
    text_.append(text->as_string().data(), text->as_string().size());
    ++tokens_;
  }
  if (const auto* f = ch.as_object().if_contains("finish_reason"); f && !f->is_null())
    finished_ = true;
}

bool stream_resume::resumable() const {
  if (!active_ || lost_ || finished_ || !data_.empty() || !line_.empty()) return false;
  return !max_tokens_ || static_cast<std::int64_t>(tokens_) < *max_tokens_;
}

std::string stream_resume::continuation() const {
  json::object o = request_;
  if (max_tokens_) o[max_key_] = *max_tokens_ - static_cast<std::int64_t>(tokens_);
  if (!chat_) {
    std::string prompt(o["prompt"].as_string());
    o["prompt"] = prompt + text_;
    return json::serialize(o);
  }
  auto& messages = o["messages"].as_array();
  auto* cont = o.if_contains("continue_final_message");
  bool continuing = cont && cont->is_bool() && cont->as_bool() && messages.back().is_object() &&
                    messages.back().as_object().if_contains("content") &&
                    messages.back().as_object()["content"].is_string();
  if (continuing) {
    // The client was already continuing its own partial answer: this goes on after it.
    auto& content = messages.back().as_object()["content"];
    std::string had(content.as_string());
    content = had + text_;
  } else {
    messages.push_back(json::object{{"role", "assistant"}, {"content", text_}});
  }
  o["continue_final_message"] = true;
  o["add_generation_prompt"] = false;
  return json::serialize(o);
}

}  // namespace meridian::proxy
