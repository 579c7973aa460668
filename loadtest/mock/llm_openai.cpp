#include "mock/llm_openai.hpp"

#include <boost/json.hpp>
#include <cmath>

#include "common/net.hpp"

namespace meridian::loadtest::llm {

namespace json = boost::json;

namespace {

constexpr std::string_view vocab[] = {" the", " of", " and", " to",   " in", " is", " it", " that",
                                      " for", " on", " was", " with", " as", " at", " by", " an"};

}  // namespace

std::string json_quote(std::string_view s) {
  return json::serialize(json::string(s));
}

std::string_view text_generator::next() {
  // The high bits: FNV's low bits mix poorly.
  auto t = vocab[(h_ >> 40) % std::size(vocab)];
  mix(t);
  return t;
}

void append_error_json(std::string& out, int status, std::string_view message,
                       std::string_view type, std::string_view extra_headers, bool keep_alive) {
  std::string body = "{\"error\":{\"message\":" + json_quote(message) + ",\"type\":\"" +
                     std::string(type) + "\",\"param\":null,\"code\":" + std::to_string(status) +
                     "}}";
  append_response(out, status, "application/json", body, extra_headers, keep_alive);
}

bool parse_generation(std::string_view body, api kind, parsed_request& pr, std::string& err) {
  error_code ec;
  json::value v = json::parse(body, ec);
  if (ec || !v.is_object()) {
    err = "request body is not a JSON object";
    return false;
  }
  auto& o = v.as_object();
  if (auto m = o.if_contains("model"); m && m->is_string()) pr.model = std::string(m->as_string());
  auto int_field = [&](const char* k) -> int {
    auto x = o.if_contains(k);
    if (!x) return -1;
    if (x->is_int64()) return static_cast<int>(x->as_int64());
    if (x->is_uint64()) return static_cast<int>(x->as_uint64());
    return -1;
  };
  pr.max_tokens = int_field("max_completion_tokens");
  if (pr.max_tokens < 0) pr.max_tokens = int_field("max_tokens");
  if (auto s = o.if_contains("stream"); s && s->is_bool()) pr.stream = s->as_bool();
  if (auto so = o.if_contains("stream_options"); so && so->is_object())
    if (auto iu = so->as_object().if_contains("include_usage"); iu && iu->is_bool())
      pr.include_usage = iu->as_bool();
  auto add_text = [&](const json::value& c) {
    if (c.is_string())
      pr.prompt.append(c.as_string().data(), c.as_string().size());
    else if (c.is_array())
      for (auto& part : c.as_array())
        if (part.is_object())
          if (auto t = part.as_object().if_contains("text"); t && t->is_string())
            pr.prompt.append(t->as_string().data(), t->as_string().size());
  };
  if (kind == api::chat) {
    auto msgs = o.if_contains("messages");
    if (!msgs || !msgs->is_array() || msgs->as_array().empty()) {
      err = "'messages' must be a non-empty array";
      return false;
    }
    for (auto& m : msgs->as_array())
      if (m.is_object())
        if (auto c = m.as_object().if_contains("content")) add_text(*c);
  } else if (kind == api::completions) {
    auto p = o.if_contains("prompt");
    if (!p) {
      err = "'prompt' is required";
      return false;
    }
    if (p->is_array()) {
      for (auto& x : p->as_array()) {
        if (x.is_string())
          pr.prompt.append(x.as_string().data(), x.as_string().size());
        else
          pr.prompt.append("tok ");  // token ids count as ~one token each
      }
    } else {
      add_text(*p);
    }
  } else {
    auto in = o.if_contains("input");
    if (!in) {
      err = "'input' is required";
      return false;
    }
    if (in->is_array()) {
      pr.inputs = static_cast<int>(std::max<std::size_t>(1, in->as_array().size()));
      for (auto& x : in->as_array())
        if (x.is_string()) pr.prompt.append(x.as_string().data(), x.as_string().size());
    } else {
      add_text(*in);
    }
  }
  return true;
}

std::string completion_body(const chunk_writer& cw, std::string_view prompt, int prompt_tokens,
                            int output_tokens, int cached_tokens, const char* finish) {
  const api kind = cw.kind;
  std::string b;
  std::string text;
  text_generator gen(prompt);
  for (int i = 1; i <= output_tokens; ++i) text.append(gen.next());
  b = "{\"id\":" + cw.id_json + ",\"object\":\"" +
      (kind == api::chat ? "chat.completion" : "text_completion") + "\",\"created\":" + cw.created +
      ",\"model\":" + cw.model_json + ",\"choices\":[{\"index\":0,";
  if (kind == api::chat)
    b += "\"message\":{\"role\":\"assistant\",\"content\":\"" + text + "\",\"tool_calls\":[]},";
  else
    b += "\"text\":\"" + text + "\",";
  b +=
      std::string("\"logprobs\":null,\"finish_reason\":\"") + finish + "\",\"stop_reason\":null}],";
  b += "\"usage\":{\"prompt_tokens\":" + std::to_string(prompt_tokens) +
       ",\"total_tokens\":" + std::to_string(prompt_tokens + output_tokens) +
       ",\"completion_tokens\":" + std::to_string(output_tokens) +
       ",\"prompt_tokens_details\":{\"cached_tokens\":" + std::to_string(cached_tokens) +
       "}},\"prompt_logprobs\":null}";
  return b;
}

std::string embeddings_body(const chunk_writer& cw, int inputs, int dim, int prompt_tokens) {
  std::string b;
  b = "{\"object\":\"list\",\"data\":[";
  for (int i = 0; i < inputs; ++i) {
    if (i) b += ',';
    b += "{\"object\":\"embedding\",\"index\":" + std::to_string(i) + ",\"embedding\":[";
    for (int d = 0; d < dim; ++d) {
      if (d) b += ',';
      b += std::to_string(std::sin(d + i + prompt_tokens) * 0.5);
    }
    b += "]}";
  }
  b += "],\"model\":" + cw.model_json +
       ",\"usage\":{\"prompt_tokens\":" + std::to_string(prompt_tokens) +
       ",\"total_tokens\":" + std::to_string(prompt_tokens) + "}}";
  return b;
}

std::string models_body(const std::string& model, int max_model_len) {
  auto m = json_quote(model);
  std::string b =
      "{\"object\":\"list\",\"data\":[{\"id\":" + m +
      ",\"object\":\"model\",\"created\":0,\"owned_by\":\"meridian-mock\",\"root\":" + m +
      ",\"parent\":null,\"max_model_len\":" + std::to_string(max_model_len) + "}]}";
  return b;
}

}  // namespace meridian::loadtest::llm
