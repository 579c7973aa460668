#include <doctest/doctest.h>

#include <string>

#include "meridian/routing/grpc_model.hpp"

using namespace meridian::routing;
using st = grpc_model_status;

namespace {
std::string varint(std::uint64_t v) {
  std::string out;
  do {
    unsigned char b = v & 0x7f;
    v >>= 7;
    if (v) b |= 0x80;
    out.push_back(static_cast<char>(b));
  } while (v);
  return out;
}
std::string field(int number, int wire, const std::string& payload) {
  return varint(static_cast<std::uint64_t>(number) << 3 | static_cast<unsigned>(wire)) + payload;
}
std::string str(int number, const std::string& s) { return field(number, 2, varint(s.size()) + s); }
std::string framed(const std::string& msg, char flag = 0) {
  std::string out(1, flag);
  for (int shift : {24, 16, 8, 0}) out.push_back(static_cast<char>(msg.size() >> shift));
  return out + msg;
}
}  // namespace

TEST_CASE("gRPC model reader: KServe v2 ModelInferRequest's model_name, strictly") {
  // model_name = 1, model_version = 2, id = 3, parameters = 4 (a map), inputs = 5 (messages).
  std::string req = str(1, "llama-3-8b") + str(2, "1") + str(3, "req-7") +
                    str(5, str(1, "INPUT0") + str(2, "BYTES") + field(3, 0, varint(1)));
  auto whole = framed(req);  // the name is a view into these bytes
  auto r = read_grpc_model(whole, 1 << 20);
  CHECK(r.status == st::found);
  CHECK(r.name == "llama-3-8b");
  CHECK(r.message_bytes == req.size());

  // Fields in any order; protobuf's last occurrence wins, as the backend will read it.
  CHECK(read_grpc_model(framed(str(3, "x") + str(1, "a") + str(1, "b")), 1 << 20).name == "b");
  // Fixed-width and varint fields elsewhere are skipped.
  CHECK(read_grpc_model(framed(field(9, 1, std::string(8, 'z')) + field(10, 5, "abcd") +
                               field(11, 0, varint(1ull << 63)) + str(1, "m")),
                        1 << 20)
            .name == "m");

  // Not there yet: every cut of the message, the prefix included.
  for (std::size_t cut = 0; cut < whole.size(); ++cut)
    CHECK(read_grpc_model(whole.substr(0, cut), 1 << 20).status == st::incomplete);
  // Bytes after the first message (a stream's next messages) do not matter.
  CHECK(read_grpc_model(whole + framed(str(1, "other")), 1 << 20).name == "llama-3-8b");

  CHECK(read_grpc_model(framed(str(2, "1")), 1 << 20).status == st::absent);
  CHECK(read_grpc_model(framed(str(1, "")), 1 << 20).status == st::absent);
  CHECK(read_grpc_model(framed(""), 1 << 20).status == st::absent);
  CHECK(read_grpc_model(framed(req, 1), 1 << 20).status == st::compressed);
  CHECK(read_grpc_model(framed(req), 8).status == st::too_large);

  // Malformed: each refused, none read as a model.
  for (const std::string& bad : {
           std::string("\x0a\x05" "ab", 4),                 // length past the message
           field(1, 0, varint(5)),                           // model_name as a varint
           field(1, 5, "abcd"),                              // model_name as fixed32
           field(2, 3, "") + str(1, "m"),                    // a group
           field(0, 2, varint(1) + "x"),                     // field number 0
           std::string("\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f", 11),  // varint > 64 bits
           str(1, "\xc0\xaf"),                               // overlong UTF-8
           str(1, "\xed\xa0\x80"),                           // a surrogate
           str(1, "ab\xff"),                                 // not UTF-8
           field(3, 1, "1234567"),                           // fixed64 cut short
           std::string("\x80", 1),                           // a key cut short
       })
    CHECK_MESSAGE(read_grpc_model(framed(bad), 1 << 20).status == st::malformed, bad.size());
  CHECK(read_grpc_model(framed(req, 2), 1 << 20).status == st::malformed);  // flag other than 0/1
  CHECK(read_grpc_model(framed(str(1, "mod\xc3\xa8le")), 1 << 20).name == "mod\xc3\xa8le");
}
