#include "load/sse.hpp"

#include <boost/json.hpp>

namespace meridian::loadtest {

namespace json = boost::json;

namespace {
long int_of(const json::value* v) {
  if (!v) return -1;
  if (v->is_int64()) return static_cast<long>(v->as_int64());
  if (v->is_uint64()) return static_cast<long>(v->as_uint64());
  return -1;
}

void read_usage(const json::object& o, openai_chunk_info& info) {
  auto u = o.if_contains("usage");
  if (u && u->is_object()) {
    info.has_usage = true;
    info.prompt_tokens = int_of(u->as_object().if_contains("prompt_tokens"));
    info.completion_tokens = int_of(u->as_object().if_contains("completion_tokens"));
  }
}

bool non_empty_string(const json::value* v) {
  return v && v->is_string() && !v->as_string().empty();
}
}  // namespace

openai_chunk_info inspect_openai_chunk(std::string_view data) {
  openai_chunk_info info;
  if (data == "[DONE]") {
    info.done = true;
    return info;
  }
  // A stack arena keeps parsing allocation-free for ordinary chunk sizes.
  unsigned char arena[4096];
  json::monotonic_resource mr(arena, sizeof arena);
  boost::system::error_code ec;
  json::value v = json::parse(data, ec, &mr);
  if (ec || !v.is_object()) {
    info.is_error = true;
    return info;
  }
  auto& o = v.as_object();
  if (o.contains("error")) info.is_error = true;
  if (auto ch = o.if_contains("choices"); ch && ch->is_array()) {
    for (auto& c : ch->as_array()) {
      if (!c.is_object()) continue;
      auto& co = c.as_object();
      if (auto d = co.if_contains("delta"); d && d->is_object()) {
        if (non_empty_string(d->as_object().if_contains("content")) ||
            non_empty_string(d->as_object().if_contains("reasoning_content")))
          info.has_token = true;
      }
      if (non_empty_string(co.if_contains("text"))) info.has_token = true;
    }
  }
  read_usage(o, info);
  return info;
}

openai_chunk_info inspect_openai_body(std::string_view body) {
  openai_chunk_info info;
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec || !v.is_object()) {
    info.is_error = true;
    return info;
  }
  auto& o = v.as_object();
  if (o.contains("error")) info.is_error = true;
  read_usage(o, info);
  return info;
}

}  // namespace meridian::loadtest
