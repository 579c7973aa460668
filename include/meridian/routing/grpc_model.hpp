// The model a KServe v2 / Triton gRPC inference request names: `model_name` (field 1, a string)
// of the request's first message (ModelInferRequest), read from gRPC's length-prefixed framing
// with a strict protobuf wire-format reader: every field of the message is walked (protobuf's
// last occurrence of a field wins, so the model a backend reads is the one found here), varints
// of at most 10 bytes, lengths within the message, no groups, field number 0 refused, and the
// name valid UTF-8. No allocation; the name is a view into the caller's bytes.
#pragma once

#include <cstddef>
#include <string_view>

namespace meridian::routing {

enum class grpc_model_status {
  found,       // the first message is whole and names a model
  incomplete,  // the first message has not arrived whole yet
  absent,      // the message has no model_name (or an empty one)
  malformed,   // not a gRPC message, or not protobuf's wire format
  compressed,  // the message is compressed (grpc-encoding): it cannot be read here
  too_large,   // the first message is longer than the reader's cap
};

struct grpc_model {
  grpc_model_status status = grpc_model_status::incomplete;
  std::string_view name;         // found: the model
  std::size_t message_bytes = 0;  // the first message's length (from its prefix), once known
};

// `body`: the request body from its first byte (the 5-byte gRPC prefix: compressed flag, length).
// A first message longer than `max_message` is too_large.
grpc_model read_grpc_model(std::string_view body, std::size_t max_message);

std::string_view describe(grpc_model_status s);

}  // namespace meridian::routing
