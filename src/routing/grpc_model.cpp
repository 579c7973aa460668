#include "meridian/routing/grpc_model.hpp"

#include <cstdint>

#include "meridian/common/protowire.hpp"

namespace meridian::routing {

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
  common::proto_reader in(msg);
  common::proto_field f;
  while (in.next(f)) {
    if (f.number != 1) continue;
    if (f.wire_type != 2) {  // model_name as anything but bytes: not this message
      r.status = grpc_model_status::malformed;
      return r;
    }
    name = f.bytes;
  }
  if (in.malformed()) {
    r.status = grpc_model_status::malformed;
    return r;
  }
  if (!common::valid_utf8(name)) {
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
