// libFuzzer target for the gRPC model reader, checked against protobuf's own wire-format parser
// (libprotobuf's UnknownFieldSet, which reads any message without its schema): whatever the
// reader accepts, protobuf accepts, and the model it finds is protobuf's last field 1; whatever
// protobuf accepts without groups, with field 1 only as valid UTF-8 bytes and every tag within 32
// bits and every varint within 64, the reader accepts (protobuf drops the bits past them; the
// reader refuses such a field rather than guess).
#include <google/protobuf/unknown_field_set.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "meridian/routing/grpc_model.hpp"

using meridian::routing::grpc_model_status;
using meridian::routing::read_grpc_model;

namespace {
bool utf8(const std::string& s) {
  // The reader's rule restated plainly: RFC 3629 sequences only.
  std::size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = c < 0x80 ? 0 : c >= 0xc2 && c <= 0xdf ? 1 : c >= 0xe0 && c <= 0xef ? 2
                  : c >= 0xf0 && c <= 0xf4 ? 3 : 9;
    if (n == 9 || i + n >= s.size() + (n ? 0 : 1)) return false;
    std::uint32_t cp = n == 0 ? c : c & (0x3f >> n);
    for (std::size_t k = 1; k <= n; ++k) {
      auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3f);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += n + 1;
  }
  return true;
}
// Whether `m` (walked leniently, as protobuf walks it) has a tag past 32 bits or a varint past 64.
bool overlong(std::string_view m) {
  bool over = false;
  auto varint = [&](std::uint64_t& v) {
    v = 0;
    for (int i = 0; i < 10 && !m.empty(); ++i) {
      auto b = static_cast<unsigned char>(m.front());
      m.remove_prefix(1);
      if (i == 9 && b > 1) over = true;
      v |= static_cast<std::uint64_t>(b & 0x7f) << (7 * i);
      if (!(b & 0x80)) return true;
    }
    return false;
  };
  while (!m.empty()) {
    std::uint64_t key = 0, v = 0;
    if (!varint(key)) return over;
    if (over || key >> 32) return true;
    switch (key & 7) {
      case 0:
        if (!varint(v) || over) return over;
        break;
      case 1:
      case 5: {
        std::size_t n = (key & 7) == 1 ? 8 : 4;
        if (m.size() < n) return false;
        m.remove_prefix(n);
        break;
      }
      case 2:
        if (!varint(v) || over || v > m.size()) return over;
        m.remove_prefix(static_cast<std::size_t>(v));
        break;
      default:
        return false;
    }
  }
  return over;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string msg(reinterpret_cast<const char*>(data), size);
  std::string body(5, '\0');
  body[1] = static_cast<char>(size >> 24);
  body[2] = static_cast<char>(size >> 16);
  body[3] = static_cast<char>(size >> 8);
  body[4] = static_cast<char>(size);
  body += msg;
  auto r = read_grpc_model(body, 1 << 20);
  // Any cut of the framed message is incomplete, never an answer.
  if (size > 0 && read_grpc_model(std::string_view(body).substr(0, body.size() - 1), 1 << 20).status !=
                      grpc_model_status::incomplete)
    std::abort();
  google::protobuf::UnknownFieldSet fields;
  bool parsed = fields.ParseFromArray(msg.data(), static_cast<int>(msg.size()));
  bool groups = false, field1_other = false, has1 = false;
  std::string last1;
  for (int i = 0; parsed && i < fields.field_count(); ++i) {
    const auto& f = fields.field(i);
    if (f.type() == google::protobuf::UnknownField::TYPE_GROUP) groups = true;
    if (f.number() != 1) continue;
    if (f.type() == google::protobuf::UnknownField::TYPE_LENGTH_DELIMITED) {
      has1 = true;
      last1 = f.length_delimited();
    } else {
      field1_other = true;
    }
  }
  bool accepted = r.status == grpc_model_status::found || r.status == grpc_model_status::absent;
  if (accepted) {
    if (!parsed || groups || field1_other) std::abort();
    if (r.status == grpc_model_status::found && (!has1 || last1 != r.name)) std::abort();
    if (r.status == grpc_model_status::absent && has1 && !last1.empty()) std::abort();
  } else if (parsed && !groups && !field1_other && utf8(last1) && !overlong(msg)) {
    std::abort();
  }
  return 0;
}
