// libFuzzer target for request head handling: parse, decode a chunked body, re-frame, and check
// that what the gateway would send upstream parses back to the same request.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "meridian/http/chunked.hpp"
#include "meridian/http/headers.hpp"
#include "meridian/http/parser.hpp"

using namespace meridian::http;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  static std::vector<header> storage(100), storage2(200);
  head_limits limits{8192, 100};
  std::size_t end = find_head_end(in);
  request_head req;
  parse_error err{};
  auto st = parse_request(end ? in.substr(0, end) : in, limits, storage, req, err);
  if (st != parse_status::complete) return 0;
  if (req.head_size != end) std::abort();
  for (const auto& h : req.fields()) {
    if (h.name.data() < in.data() || h.name.data() + h.name.size() > in.data() + size) std::abort();
    if (h.name.empty() || !is_token(h.name)) std::abort();
  }
  std::string body;
  if (req.body == body_kind::chunked) {
    chunked_decoder dec;
    std::string_view rest = in.substr(end);
    while (!rest.empty() && !dec.done() && !dec.failed()) {
      auto step = dec.decode(rest);
      if (step.consumed == 0 && step.data.empty()) break;
      if (step.consumed > rest.size()) std::abort();
      body.append(step.data);
      rest.remove_prefix(step.consumed);
    }
    if (dec.payload_bytes() != body.size()) std::abort();
  }
  // Re-frame as the proxy does and parse it back: the backend must see one unambiguous request.
  std::string out;
  out_framing f = req.body == body_kind::chunked          ? out_framing::chunked
                  : req.body == body_kind::content_length ? out_framing::content_length
                                                          : out_framing::none;
  build_upstream_request(out, req, {"127.0.0.1", "http", "fuzz"}, f, req.content_length);
  request_head again;
  if (parse_request(out, {1 << 20, 200}, storage2, again, err) != parse_status::complete) {
    std::abort();
  }
  if (again.method != req.method || again.path != req.path || again.body != req.body ||
      again.content_length != req.content_length || again.head_size != out.size())
    std::abort();
  // Nothing hop-by-hop crosses, except the headers the gateway writes itself (a client may
  // list any of them in Connection: its own copy is dropped, the gateway's is sent).
  auto written_by_gateway = [](std::string_view n) {
    for (std::string_view own : {"host", "transfer-encoding", "content-length", "x-forwarded-for",
                                 "x-forwarded-proto", "x-forwarded-host", "x-request-id"})
      if (iequals(n, own)) return true;
    return false;
  };
  for (const auto& h : again.fields())
    if (req.is_hop_by_hop(h.name) && !written_by_gateway(h.name)) std::abort();
  return 0;
}
