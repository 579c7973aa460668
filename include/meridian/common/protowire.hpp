// Protobuf's wire format, read strictly and written for the few messages the gateway builds
// itself (gRPC health and model-repository calls). No schema, no allocation when reading: a
// field's bytes are a view into the caller's message.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace meridian::common {

// One field of a message.
struct proto_field {
  std::uint32_t number = 0;
  int wire_type = 0;        // 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32
  std::uint64_t value = 0;  // wire types 0, 1 and 5
  std::string_view bytes;   // wire type 2
};

// Walks a message's fields in order: varints of at most 10 bytes, lengths within the message,
// field numbers 1 to 2^29-1, no groups (wire types 3, 4) and no unused wire types (6, 7).
class proto_reader {
 public:
  explicit proto_reader(std::string_view message) : rest_(message) {}
  // The next field; false at the end of the message or at malformed bytes (malformed() then).
  bool next(proto_field& f);
  bool malformed() const { return bad_; }

 private:
  std::string_view rest_;
  bool bad_ = false;
};

bool valid_utf8(std::string_view s);

// Appends a field: a varint, or length-delimited bytes (a string or an embedded message).
void proto_put_varint(std::string& out, std::uint32_t number, std::uint64_t value);
void proto_put_bytes(std::string& out, std::uint32_t number, std::string_view bytes);

// gRPC's framing of one message: a compressed flag (0) and a 4-byte big-endian length.
std::string grpc_frame(std::string_view message);

}  // namespace meridian::common
