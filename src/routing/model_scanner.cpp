#include "meridian/routing/model_scanner.hpp"

#include "meridian/routing/route_table.hpp"

namespace meridian::routing {
namespace {

constexpr std::string_view model_key = "model";

constexpr bool is_ws(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}
constexpr bool is_digit(unsigned char c) {
  return c >= '0' && c <= '9';
}

constexpr int hex_value(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

model_scanner::model_scanner(std::size_t max_model_bytes) : max_model_bytes_(max_model_bytes) {}

void model_scanner::reset() {
  model_.clear();  // keeps its capacity for the next request
  state_ = state::scanning;
  at_ = where::start;
  number_ = number_part::minus;
  role_ = role::skip;
  depth_ = 0;
  object_bits_ = 0;
  seen_model_key_ = false;
  has_model_ = false;
  model_value_next_ = false;
  key_match_ = 0;
  utf8_left_ = 0;
  utf8_lo_ = 0x80;
  utf8_hi_ = 0xbf;
  hex_count_ = 0;
  hex_value_ = 0;
  high_surrogate_ = 0;
  literal_ = nullptr;
}

model_scanner::state model_scanner::fail(state s) {
  state_ = s;
  return s;
}

model_scanner::state model_scanner::feed(std::string_view bytes) {
  if (state_ != state::scanning && state_ != state::done) return state_;
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const auto* const end = p + bytes.size();
  while (p < end) {
    // Most of a chat request is message text nobody routes on: skip its plain ASCII in bulk.
    if (at_ == where::string && role_ == role::skip && utf8_left_ == 0) {
      while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\') ++p;
      if (p == end) break;
    }
    if (!step(*p)) return state_;
    ++p;
  }
  return state_;
}

model_scanner::state model_scanner::finish() {
  if (state_ == state::scanning) fail(state::invalid);
  return state_;
}

// One byte of the grammar; false once the state is final (set through fail).
bool model_scanner::step(unsigned char c) {
  switch (at_) {
    case where::start:
      if (is_ws(c)) return true;
      if (c == '{') return open(true);
      // Another JSON value is still JSON, just not a request object.
      if (c == '[' || c == '"' || c == '-' || is_digit(c) || c == 't' || c == 'f' || c == 'n')
        fail(state::not_object);
      else
        fail(state::invalid);
      return false;
    case where::key_or_close:
      if (c == '}') return close(true);
      [[fallthrough]];
    case where::key:
      if (is_ws(c)) return true;
      if (c != '"') break;
      begin_string(depth_ == 1 ? role::key : role::nested_key);
      return true;
    case where::colon:
      if (is_ws(c)) return true;
      if (c != ':') break;
      at_ = where::value;
      return true;
    case where::value_or_close:
      if (c == ']') return close(false);
      [[fallthrough]];
    case where::value:
      if (is_ws(c)) return true;
      return value_start(c);
    case where::after_value:
      return after_value(c);
    case where::string:
      return string_byte(c);
    case where::escape:
      return escape_byte(c);
    case where::hex:
      return hex_byte(c);
    case where::pair_backslash:
      if (c != '\\') break;
      at_ = where::pair_u;
      return true;
    case where::pair_u:
      if (c != 'u') break;
      at_ = where::hex;
      return true;
    case where::number: {
      bool ended = false;
      if (!number_byte(c, ended)) return false;
      if (!ended) return true;
      at_ = where::after_value;
      return after_value(c);  // the byte after a number belongs to what follows it
    }
    case where::literal:
      if (c != static_cast<unsigned char>(*literal_)) break;
      if (*++literal_ == '\0') at_ = where::after_value;
      return true;
    case where::end:
      if (is_ws(c)) return true;
      break;
  }
  fail(state::invalid);
  return false;
}

bool model_scanner::open(bool is_object) {
  if (depth_ >= max_depth) {
    fail(state::too_deep);
    return false;
  }
  if (is_object) object_bits_ |= std::uint64_t{1} << depth_;
  ++depth_;
  at_ = is_object ? where::key_or_close : where::value_or_close;
  return true;
}

bool model_scanner::close(bool is_object) {
  const std::uint64_t bit = std::uint64_t{1} << (depth_ - 1);
  if (((object_bits_ & bit) != 0) != is_object) {
    fail(state::invalid);
    return false;
  }
  object_bits_ &= ~bit;
  if (--depth_ == 0) {
    at_ = where::end;
    state_ = state::done;
  } else {
    at_ = where::after_value;
  }
  return true;
}

bool model_scanner::after_value(unsigned char c) {
  if (is_ws(c)) return true;
  const bool in_object = (object_bits_ >> (depth_ - 1)) & 1;
  if (c == ',') {
    at_ = in_object ? where::key : where::value;
    return true;
  }
  if (c == '}' || c == ']') return close(c == '}');
  fail(state::invalid);
  return false;
}

bool model_scanner::value_start(unsigned char c) {
  const bool is_model = model_value_next_;
  model_value_next_ = false;
  switch (c) {
    case '{':
      return open(true);
    case '[':
      return open(false);
    case '"':
      begin_string(is_model ? role::model : role::skip);
      return true;
    case 't':
      literal_ = "rue";
      at_ = where::literal;
      return true;
    case 'f':
      literal_ = "alse";
      at_ = where::literal;
      return true;
    case 'n':
      literal_ = "ull";
      at_ = where::literal;
      return true;
    case '-':
      number_ = number_part::minus;
      at_ = where::number;
      return true;
    default:
      if (!is_digit(c)) break;
      number_ = c == '0' ? number_part::zero : number_part::digits;
      at_ = where::number;
      return true;
  }
  fail(state::invalid);
  return false;
}

// RFC 8259 §6: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
bool model_scanner::number_byte(unsigned char c, bool& ended) {
  const bool digit = is_digit(c);
  switch (number_) {
    case number_part::minus:
      if (!digit) break;
      number_ = c == '0' ? number_part::zero : number_part::digits;
      return true;
    case number_part::zero:
    case number_part::digits:
    case number_part::fraction:
      if (digit && number_ != number_part::zero) return true;
      if (c == '.' && number_ != number_part::fraction) {
        number_ = number_part::dot;
        return true;
      }
      if (c == 'e' || c == 'E') {
        number_ = number_part::e;
        return true;
      }
      ended = true;  // a digit after a leading zero ends it too, and then fails as garbage
      return true;
    case number_part::dot:
      if (!digit) break;
      number_ = number_part::fraction;
      return true;
    case number_part::e:
      if (c == '+' || c == '-') {
        number_ = number_part::e_sign;
        return true;
      }
      [[fallthrough]];
    case number_part::e_sign:
      if (!digit) break;
      number_ = number_part::exponent;
      return true;
    case number_part::exponent:
      if (!digit) ended = true;
      return true;
  }
  fail(state::invalid);
  return false;
}

void model_scanner::begin_string(role r) {
  role_ = r;
  at_ = where::string;
  key_match_ = 0;
  if (r == role::model) model_.clear();
}

bool model_scanner::string_byte(unsigned char c) {
  if (utf8_left_ > 0) {
    if (c < utf8_lo_ || c > utf8_hi_) {
      fail(state::invalid);
      return false;
    }
    utf8_lo_ = 0x80;
    utf8_hi_ = 0xbf;
    --utf8_left_;
    return emit(c);
  }
  if (c == '"') return end_string();
  if (c == '\\') {
    at_ = where::escape;
    return true;
  }
  if (c < 0x80) {
    if (c >= 0x20) return emit(c);
    fail(state::invalid);  // raw control characters must be escaped
    return false;
  }
  // UTF-8 lead byte (RFC 3629 §4): no overlong forms, no surrogates, nothing above U+10FFFF.
  if (c >= 0xc2 && c <= 0xdf) {
    utf8_left_ = 1;
  } else if (c >= 0xe0 && c <= 0xef) {
    utf8_left_ = 2;
    if (c == 0xe0) utf8_lo_ = 0xa0;
    if (c == 0xed) utf8_hi_ = 0x9f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    utf8_left_ = 3;
    if (c == 0xf0) utf8_lo_ = 0x90;
    if (c == 0xf4) utf8_hi_ = 0x8f;
  } else {
    fail(state::invalid);
    return false;
  }
  return emit(c);
}

bool model_scanner::escape_byte(unsigned char c) {
  unsigned char decoded = 0;
  switch (c) {
    case '"':
    case '\\':
    case '/':
      decoded = c;
      break;
    case 'b':
      decoded = '\b';
      break;
    case 'f':
      decoded = '\f';
      break;
    case 'n':
      decoded = '\n';
      break;
    case 'r':
      decoded = '\r';
      break;
    case 't':
      decoded = '\t';
      break;
    case 'u':
      at_ = where::hex;
      hex_count_ = 0;
      hex_value_ = 0;
      return true;
    default:
      fail(state::invalid);
      return false;
  }
  at_ = where::string;
  return emit(decoded);
}

bool model_scanner::hex_byte(unsigned char c) {
  int v = hex_value(c);
  if (v < 0) {
    fail(state::invalid);
    return false;
  }
  hex_value_ = hex_value_ * 16 + static_cast<std::uint32_t>(v);
  if (++hex_count_ < 4) return true;
  const std::uint32_t unit = hex_value_;
  hex_count_ = 0;
  hex_value_ = 0;
  const bool high = unit >= 0xd800 && unit <= 0xdbff;
  const bool low = unit >= 0xdc00 && unit <= 0xdfff;
  if (high_surrogate_ != 0) {
    if (!low) {
      fail(state::invalid);  // a high surrogate without its low half
      return false;
    }
    const std::uint32_t cp = 0x10000 + ((high_surrogate_ - 0xd800) << 10) + (unit - 0xdc00);
    high_surrogate_ = 0;
    at_ = where::string;
    return emit_code_point(cp);
  }
  if (high) {
    high_surrogate_ = unit;
    at_ = where::pair_backslash;
    return true;
  }
  if (low) {
    fail(state::invalid);  // a low surrogate on its own
    return false;
  }
  at_ = where::string;
  return emit_code_point(unit);
}

bool model_scanner::emit_code_point(std::uint32_t cp) {
  if (cp < 0x80) return emit(static_cast<unsigned char>(cp));
  if (cp < 0x800)
    return emit(static_cast<unsigned char>(0xc0 | (cp >> 6))) &&
           emit(static_cast<unsigned char>(0x80 | (cp & 0x3f)));
  if (cp < 0x10000)
    return emit(static_cast<unsigned char>(0xe0 | (cp >> 12))) &&
           emit(static_cast<unsigned char>(0x80 | ((cp >> 6) & 0x3f))) &&
           emit(static_cast<unsigned char>(0x80 | (cp & 0x3f)));
  return emit(static_cast<unsigned char>(0xf0 | (cp >> 18))) &&
         emit(static_cast<unsigned char>(0x80 | ((cp >> 12) & 0x3f))) &&
         emit(static_cast<unsigned char>(0x80 | ((cp >> 6) & 0x3f))) &&
         emit(static_cast<unsigned char>(0x80 | (cp & 0x3f)));
}

// A decoded byte of the current string.
bool model_scanner::emit(unsigned char b) {
  if (role_ == role::key) {
    if (key_match_ >= 0) {
      if (static_cast<std::size_t>(key_match_) < model_key.size() &&
          static_cast<unsigned char>(model_key[key_match_]) == b)
        ++key_match_;
      else
        key_match_ = -1;
    }
  } else if (role_ == role::model) {
    if (model_.size() >= max_model_bytes_) {
      fail(state::too_long);
      return false;
    }
    model_.push_back(static_cast<char>(b));
  }
  return true;
}

bool model_scanner::end_string() {
  switch (role_) {
    case role::key:
      at_ = where::colon;
      if (static_cast<std::size_t>(key_match_) != model_key.size()) return true;
      if (seen_model_key_) {
        fail(state::duplicate);  // parsers disagree on which one wins: first, last, or error
        return false;
      }
      seen_model_key_ = true;
      model_value_next_ = true;
      return true;
    case role::nested_key:
      at_ = where::colon;
      return true;
    case role::model:
      has_model_ = true;
      break;
    case role::skip:
      break;
  }
  at_ = where::after_value;
  return true;
}

}  // namespace meridian::routing
