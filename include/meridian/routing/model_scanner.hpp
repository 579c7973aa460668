// Finds the top-level "model" of a JSON request body, read as a JSON parser reads it, fed in
// pieces as the body arrives; one instance is used by one request on one worker thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace meridian::routing {

// A resumable, validating scanner of one JSON object's top level. Nested values are checked and
// skipped; keys are compared after decoding escapes, so "mo\u0064el" is the key model, and a
// second top-level model key is reported (backends disagree on which one wins). The only
// storage is the decoded model, capped at max_model_bytes; nothing is allocated per byte.
class model_scanner {
 public:
  enum class state {
    scanning,    // valid so far, the top-level object has not closed yet
    done,        // the top-level object closed (only whitespace may follow)
    duplicate,   // a second top-level "model" key (sticky)
    invalid,     // not JSON, or bytes after the object
    too_deep,    // nested deeper than max_depth: valid JSON perhaps, but not read (sticky)
    not_object,  // JSON whose top-level value is not an object
    too_long,    // the model string is longer than max_model_bytes (sticky)
  };

  static constexpr int max_depth = 64;  // nesting levels, the top-level object included

  explicit model_scanner(std::size_t max_model_bytes = 256);

  // Feeds the next bytes of the body (any split, down to one byte at a time); returns the state
  // after them. Once the state is neither scanning nor done, further bytes are ignored.
  state feed(std::string_view bytes);
  // The body ended: scanning turns into done if the top-level object was closed, else invalid.
  state finish();
  state current() const { return state_; }
  // A top-level "model" string was seen (a non-string model never matches a model route).
  bool has_model() const { return has_model_; }
  // Decoded: escapes resolved, \uXXXX (surrogate pairs included) as UTF-8.
  std::string_view model() const { return model_; }
  void reset();

 private:
  // Where the next byte falls in the JSON grammar.
  enum class where : std::uint8_t {
    start,           // before the top-level value
    key_or_close,    // after '{'
    key,             // after ',' in an object
    colon,           // after a key
    value_or_close,  // after '['
    value,           // after ':', or after ',' in an array
    after_value,     // expecting ',' or the close of the container
    string,
    escape,          // after a backslash in a string
    hex,             // in the four digits of \uXXXX
    pair_backslash,  // after a high surrogate: its low half must follow as \uXXXX
    pair_u,
    number,
    literal,
    end,  // after the top-level object: whitespace only
  };
  enum class number_part : std::uint8_t { minus, zero, digits, dot, fraction, e, e_sign, exponent };
  // Whose bytes a string's decoded bytes are: a top-level key (compared with "model"), the
  // model value (kept), or anything else (checked and dropped).
  enum class role : std::uint8_t { skip, nested_key, key, model };

  bool step(unsigned char c);
  bool string_byte(unsigned char c);
  bool escape_byte(unsigned char c);
  bool hex_byte(unsigned char c);
  bool number_byte(unsigned char c, bool& reprocess);
  bool value_start(unsigned char c);
  bool after_value(unsigned char c);
  bool open(bool is_object);
  bool close(bool is_object);
  void begin_string(role r);
  bool end_string();
  bool emit(unsigned char b);
  bool emit_code_point(std::uint32_t cp);
  state fail(state s);

  std::size_t max_model_bytes_;
  std::string model_;
  state state_ = state::scanning;
  where at_ = where::start;
  number_part number_ = number_part::minus;
  role role_ = role::skip;
  int depth_ = 0;
  std::uint64_t object_bits_ = 0;  // bit d-1 set: nesting level d is an object
  bool seen_model_key_ = false;
  bool has_model_ = false;
  bool model_value_next_ = false;  // the value after this colon belongs to the model key
  // Key decoding: how many bytes of "model" matched so far, or -1 once it cannot match.
  int key_match_ = 0;
  // String lexing: UTF-8 continuation bytes still expected and the range of the next one.
  int utf8_left_ = 0;
  unsigned char utf8_lo_ = 0x80, utf8_hi_ = 0xbf;
  // \uXXXX: hex digits read, the value so far, and a high surrogate waiting for its pair.
  int hex_count_ = 0;
  std::uint32_t hex_value_ = 0;
  std::uint32_t high_surrogate_ = 0;
  // Literals (true/false/null): the rest still expected.
  const char* literal_ = nullptr;
};

}  // namespace meridian::routing
