// libFuzzer target for backend response heads: parse under every request method, check the views,
// re-frame for the client as the proxy does, and check that the client reads the same response.
// The first input byte picks the client's HTTP version and keep-alive; the rest is the response.
#include <array>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "meridian/http/headers.hpp"
#include "meridian/http/parser.hpp"

using namespace meridian::http;

namespace {
constexpr std::array<std::string_view, 9> methods = {
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"};

void check_inside(std::string_view v, std::string_view buf) {
  if (v.empty()) return;
  if (v.data() < buf.data() || v.data() + v.size() > buf.data() + buf.size()) std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const int client_minor = data[0] & 1;
  const bool client_keep_alive = (data[0] & 2) != 0;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  static std::vector<header> storage(100), storage2(200);
  head_limits limits{8192, 100};
  const std::size_t end = find_head_end(in);
  const std::string_view head = end ? in.substr(0, end) : in;
  std::string out;
  for (auto method : methods) {
    response_head resp;
    parse_error err{};
    auto st = parse_response(head, limits, storage, method, resp, err);
    if ((st == parse_status::error) != (err != parse_error::none)) std::abort();
    if (st != parse_status::complete) continue;
    if (resp.head_size != end || resp.status < 100 || resp.status > 999) std::abort();
    check_inside(resp.reason, head);
    for (const auto& h : resp.fields()) {
      check_inside(h.name, head);
      check_inside(h.value, head);
      if (!is_token(h.name)) std::abort();
    }
    for (std::size_t i = 0; i < resp.connection_token_count; ++i)
      check_inside(resp.connection_tokens[i], head);
    if (method == "HEAD" && resp.body != body_kind::none) std::abort();
    if (resp.body == body_kind::until_close && resp.keep_alive) std::abort();

    // Re-frame as the proxy does (session.cpp) and read it back as the client would.
    bool keep = client_keep_alive;
    out_framing framing = out_framing::none;
    body_kind expect = body_kind::none;
    switch (resp.body) {
      case body_kind::none:
        break;
      case body_kind::content_length:
        framing = out_framing::content_length;
        expect = body_kind::content_length;
        break;
      case body_kind::chunked:
      case body_kind::until_close:
        framing = client_minor == 1 ? out_framing::chunked : out_framing::close_delimited;
        expect = client_minor == 1 ? body_kind::chunked : body_kind::until_close;
        if (client_minor == 0) keep = false;
        break;
    }
    build_downstream_response(out, resp, "fuzz-id", framing, resp.content_length, keep,
                              client_minor);
    response_head again;
    if (parse_response(out, {1 << 20, 200}, storage2, method, again, err) != parse_status::complete)
      std::abort();
    if (again.status != resp.status || again.body != expect || again.head_size != out.size() ||
        again.keep_alive != keep)
      std::abort();
    if (expect == body_kind::content_length && again.content_length != resp.content_length)
      std::abort();
    // Nothing hop-by-hop crosses, except the headers the gateway writes itself.
    for (const auto& h : again.fields())
      if (resp.is_hop_by_hop(h.name) && !iequals(h.name, "transfer-encoding") &&
          !iequals(h.name, "content-length") && !iequals(h.name, "connection") &&
          !iequals(h.name, "x-request-id"))
        std::abort();
  }
  return 0;
}
