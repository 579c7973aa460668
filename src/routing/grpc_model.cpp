#include "meridian/routing/grpc_model.hpp"

#include <cstdint>

namespace meridian::routing {
namespace {
// A base-128 varint of at most 10 bytes (a 64-bit value); false when it is cut or too long.
bool varint(std::string_view& in, std::uint64_t& out) {
  out = 0;
  for (int i = 0; i < 10; ++i) {
    if (in.empty()) return false;
    auto b = static_cast<unsigned char>(in.front());
    in.remove_prefix(1);
    if (i == 9 && b > 1) return false;  // more than 64 bits
    out |= static_cast<std::uint64_t>(b & 0x7f) << (7 * i);
    if (!(b & 0x80)) return true;
  }
  return false;
}

bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t n = 0;
    std::uint32_t cp = 0;
    if ((c & 0xe0) == 0xc0) {
      n = 1;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      n = 2;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (s.size() - i <= n) return false;
    for (std::size_t k = 1; k <= n; ++k) {
      auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3f);
    }
    // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += n + 1;
  }
  return true;
}
}  // namespace

grpc_model read_grpc_model(std::string_view body, std::size_t max_message) {
  grpc_model r;
  if (body.size() < 5) return r;  // incomplete
  auto flag = static_cast<unsigned char>(body[0]);
  std::uint64_t len = (static_cast<std::uint64_t>(static_cast<unsigned char>(body[1])) << 24) |
                      (static_cast<std::uint64_t>(static_cast<unsigned char>(body[2])) << 16) |
                      (static_cast<std::uint64_t>(static_cast<unsigned char>(body[3])) << 8) |
                      static_cast<std::uint64_t>(static_cast<unsigned char>(body[4]));
  r.message_bytes = static_cast<std::size_t>(len);
  if (flag > 1) {
    r.status = grpc_model_status::malformed;
    return r;
  }
  if (flag == 1) {
    r.status = grpc_model_status::compressed;
    return r;
  }
  if (len > max_message) {
    r.status = grpc_model_status::too_large;
    return r;
  }
  if (body.size() - 5 < len) return r;  // incomplete
  std::string_view msg = body.substr(5, static_cast<std::size_t>(len));
  std::string_view name;
  while (!msg.empty()) {
    std::uint64_t key = 0;
    if (!varint(msg, key) || key >> 3 == 0 || key >> 3 > 0x1fffffff) {
      r.status = grpc_model_status::malformed;
      return r;
    }
    std::uint64_t v = 0;
    switch (key & 7) {
      case 0:  // varint
        if (!varint(msg, v)) {
          r.status = grpc_model_status::malformed;
          return r;
        }
        if (key >> 3 == 1) {  // model_name as a varint: not this message
          r.status = grpc_model_status::malformed;
          return r;
        }
        break;
      case 1:  // 64-bit
      case 5:  // 32-bit
      {
        std::size_t n = (key & 7) == 1 ? 8 : 4;
        if (msg.size() < n || key >> 3 == 1) {
          r.status = grpc_model_status::malformed;
          return r;
        }
        msg.remove_prefix(n);
        break;
      }
      case 2:  // length-delimited
        if (!varint(msg, v) || v > msg.size()) {
          r.status = grpc_model_status::malformed;
          return r;
        }
        if (key >> 3 == 1) name = msg.substr(0, static_cast<std::size_t>(v));
        msg.remove_prefix(static_cast<std::size_t>(v));
        break;
      default:  // groups (3, 4) and the unused 6, 7
        r.status = grpc_model_status::malformed;
        return r;
    }
  }
  if (!valid_utf8(name)) {
    r.status = grpc_model_status::malformed;
    return r;
  }
  r.status = name.empty() ? grpc_model_status::absent : grpc_model_status::found;
  r.name = name;
  return r;
}

std::string_view describe(grpc_model_status s) {
  switch (s) {
    case grpc_model_status::found:
      return "found";
    case grpc_model_status::incomplete:
      return "the first message is incomplete";
    case grpc_model_status::absent:
      return "the request names no model (model_name, field 1)";
    case grpc_model_status::malformed:
      return "the request message is not valid protobuf";
    case grpc_model_status::compressed:
      return "a compressed request message cannot be routed by model";
    case grpc_model_status::too_large:
      return "the first request message exceeds the size the gateway reads";
  }
  return "";
}

}  // namespace meridian::routing
