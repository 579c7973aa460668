#include "meridian/common/protowire.hpp"

namespace meridian::common {
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

void put_varint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out += static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  out += static_cast<char>(v);
}
}  // namespace

bool proto_reader::next(proto_field& f) {
  if (bad_ || rest_.empty()) return false;
  std::uint64_t key = 0;
  if (!varint(rest_, key) || key >> 3 == 0 || key >> 3 > 0x1fffffff) {
    bad_ = true;
    return false;
  }
  f = proto_field{};
  f.number = static_cast<std::uint32_t>(key >> 3);
  f.wire_type = static_cast<int>(key & 7);
  switch (f.wire_type) {
    case 0:
      if (!varint(rest_, f.value)) bad_ = true;
      break;
    case 1:
    case 5: {
      std::size_t n = f.wire_type == 1 ? 8 : 4;
      if (rest_.size() < n) {
        bad_ = true;
        break;
      }
      for (std::size_t i = 0; i < n; ++i)
        f.value |= static_cast<std::uint64_t>(static_cast<unsigned char>(rest_[i])) << (8 * i);
      rest_.remove_prefix(n);
      break;
    }
    case 2: {
      std::uint64_t len = 0;
      if (!varint(rest_, len) || len > rest_.size()) {
        bad_ = true;
        break;
      }
      f.bytes = rest_.substr(0, static_cast<std::size_t>(len));
      rest_.remove_prefix(static_cast<std::size_t>(len));
      break;
    }
    default:  // groups (3, 4) and the unused 6, 7
      bad_ = true;
  }
  return !bad_;
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

void proto_put_varint(std::string& out, std::uint32_t number, std::uint64_t value) {
  put_varint(out, static_cast<std::uint64_t>(number) << 3);
  put_varint(out, value);
}

void proto_put_bytes(std::string& out, std::uint32_t number, std::string_view bytes) {
  put_varint(out, (static_cast<std::uint64_t>(number) << 3) | 2);
  put_varint(out, bytes.size());
  out.append(bytes);
}

std::string grpc_frame(std::string_view message) {
  std::string out(5, '\0');
  auto n = static_cast<std::uint32_t>(message.size());
  out[1] = static_cast<char>(n >> 24);
  out[2] = static_cast<char>(n >> 16);
  out[3] = static_cast<char>(n >> 8);
  out[4] = static_cast<char>(n);
  out.append(message);
  return out;
}

}  // namespace meridian::common
