#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "meridian/common/protowire.hpp"

using namespace meridian::common;

namespace {
std::vector<proto_field> all(std::string_view msg, bool& malformed) {
  std::vector<proto_field> out;
  proto_reader in(msg);
  proto_field f;
  while (in.next(f)) out.push_back(f);
  malformed = in.malformed();
  return out;
}
}  // namespace

TEST_CASE("protowire: what the writers put, the reader reads back in order") {
  std::string inner;
  proto_put_bytes(inner, 1, "resnet");
  proto_put_bytes(inner, 3, "READY");
  std::string msg;
  proto_put_varint(msg, 2, 1);
  proto_put_bytes(msg, 1, inner);
  proto_put_varint(msg, 536870911, 300);          // the largest field number, a two-byte varint
  msg += std::string("\x0d\x01\x02\x03\x04", 5);  // field 1, fixed32
  bool bad = true;
  auto fs = all(msg, bad);
  CHECK_FALSE(bad);
  REQUIRE(fs.size() == 4);
  CHECK(fs[0].number == 2);
  CHECK(fs[0].wire_type == 0);
  CHECK(fs[0].value == 1);
  CHECK(fs[1].wire_type == 2);
  CHECK(fs[1].bytes == inner);
  CHECK(fs[2].number == 536870911);
  CHECK(fs[2].value == 300);
  CHECK(fs[3].wire_type == 5);
  CHECK(fs[3].value == 0x04030201u);
  auto nested = all(fs[1].bytes, bad);
  REQUIRE(nested.size() == 2);
  CHECK(nested[0].bytes == "resnet");
  CHECK(nested[1].bytes == "READY");
}

TEST_CASE("protowire: malformed messages stop the reader and say so") {
  const std::vector<std::pair<std::string, const char*>> cases{
      {std::string("\x0a\x05"
                   "abc",
                   5),
       "a length past the message"},
      {std::string("\x00\x01", 2), "field number 0"},
      {std::string("\x0b", 1), "a group (wire type 3)"},
      {std::string("\x0e", 1), "wire type 6"},
      {std::string("\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02", 11), "a varint past 64 bits"},
      {std::string("\x08\x80", 2), "a cut varint"},
      {std::string("\x09\x01\x02", 3), "a cut fixed64"},
  };
  for (const auto& [msg, what] : cases) {
    CAPTURE(what);
    bool bad = false;
    all(msg, bad);
    CHECK(bad);
  }
  bool bad = true;
  CHECK(all("", bad).empty());
  CHECK_FALSE(bad);
}

TEST_CASE("protowire: gRPC framing and UTF-8") {
  auto framed = grpc_frame("abc");
  CHECK(framed == std::string("\x00\x00\x00\x00\x03"
                              "abc",
                              8));
  CHECK(valid_utf8("model-\xc3\xa9"));
  CHECK_FALSE(valid_utf8("\xc0\xaf"));      // overlong
  CHECK_FALSE(valid_utf8("\xed\xa0\x80"));  // a surrogate
  CHECK_FALSE(valid_utf8("\xe2\x82"));      // cut
}
