#include "meridian/upstream/stream_observer.hpp"

#include <cstring>
#include <limits>

namespace meridian::upstream {
namespace {

constexpr std::string_view bom = "\xEF\xBB\xBF";
constexpr std::string_view data_field = "data";
constexpr std::string_view done_data = "[DONE]";
// The usage keys looked for, in the order of stream_observer::usage_key (after `none`).
constexpr std::string_view usage_keys[] = {"\"prompt_tokens\"", "\"completion_tokens\"",
                                           "\"cached_tokens\""};
constexpr std::uint8_t all_keys = (1u << std::size(usage_keys)) - 1;

constexpr bool is_eol(unsigned char c) {
  return c == '\r' || c == '\n';
}
constexpr bool is_ws(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}
constexpr bool is_digit(unsigned char c) {
  return c >= '0' && c <= '9';
}

}  // namespace

void stream_observer::reset(bool sse) noexcept {
  sse_ = sse;
  at_ = where::bom;
  after_cr_ = false;
  matched_ = 0;
  has_data_ = false;
  done_matched_ = 0;
  events_ = 0;
  done_marker_ = false;
  first_event_.reset();
  last_event_.reset();
  usage_at_ = usage_at::idle;
  usage_key_ = usage_key::none;
  candidates_ = 0;
  key_matched_ = 0;
  usage_overflow_ = false;
  usage_value_ = 0;
  prompt_tokens_.reset();
  completion_tokens_.reset();
  cached_tokens_.reset();
}

stream_observer::chunk_result stream_observer::feed(std::string_view payload,
                                                    common::time_point now) noexcept {
  chunk_result r;
  const auto* p = reinterpret_cast<const unsigned char*>(payload.data());
  const auto* const end = p + payload.size();
  if (!sse_) {
    while (p < end) {
      // Between keys only a quote can start a match: most of a completion is skipped in bulk.
      if (usage_at_ == usage_at::idle) {
        p = static_cast<const unsigned char*>(
            std::memchr(p, '"', static_cast<std::size_t>(end - p)));
        if (p == nullptr) break;
      }
      usage_byte(*p);
      ++p;
    }
    return r;
  }
  while (p < end) {
    // Token text and ignored lines are most of a stream; only a line end (or, in data, a quote)
    // can change anything there.
    if (at_ == where::skip) {
      while (p < end && !is_eol(*p)) ++p;
      if (p == end) break;
    } else if (at_ == where::data && done_matched_ < 0 && usage_at_ == usage_at::idle) {
      while (p < end && !is_eol(*p) && *p != '"') ++p;
      if (p == end) break;
    }
    sse_byte(*p, now, r);
    ++p;
  }
  return r;
}

void stream_observer::sse_byte(unsigned char c, common::time_point now, chunk_result& r) {
  switch (at_) {
    case where::bom:
      if (c == static_cast<unsigned char>(bom[matched_])) {
        if (++matched_ == bom.size()) {
          at_ = where::line_start;
          matched_ = 0;
        }
        return;
      }
      if (matched_ == 0) return line_start(c, now, r);
      at_ = where::skip;  // a broken BOM: the first line names no field we know
      break;
    case where::line_start:
      return line_start(c, now, r);
    case where::name:
      if (matched_ < data_field.size() && c == static_cast<unsigned char>(data_field[matched_])) {
        ++matched_;
        return;
      }
      if (matched_ == data_field.size() && (c == ':' || is_eol(c))) {
        // A bare "data" line is a data field with an empty value.
        begin_data_line();
        at_ = c == ':' ? where::value_space : where::data;
        if (c == ':') return;
      } else {
        at_ = where::skip;
      }
      break;
    case where::value_space:
      at_ = where::data;
      if (c == ' ') return;
      break;
    case where::data:
    case where::skip:
      break;
  }
  if (is_eol(c)) return end_line(c);
  if (at_ == where::data) data_byte(c);
}

void stream_observer::line_start(unsigned char c, common::time_point now, chunk_result& r) {
  if (after_cr_) {
    after_cr_ = false;
    if (c == '\n') return;  // the second half of a CRLF, possibly in the next chunk
  }
  if (is_eol(c)) {
    dispatch(now, r);
    after_cr_ = c == '\r';
    return;
  }
  if (c == static_cast<unsigned char>(data_field[0])) {
    at_ = where::name;
    matched_ = 1;
    return;
  }
  at_ = where::skip;  // a comment (keep-alive), or event:, id:, retry: or an unknown field
}

void stream_observer::end_line(unsigned char c) {
  // Data lines join with a LF; it also ends a number that closes the line.
  if (at_ == where::data) usage_byte('\n');
  at_ = where::line_start;
  after_cr_ = c == '\r';
}

void stream_observer::begin_data_line() {
  if (has_data_) done_matched_ = -1;  // "[DONE]" is one line; two lines join with a LF
  has_data_ = true;
}

void stream_observer::data_byte(unsigned char c) {
  if (done_matched_ >= 0) {
    const auto at = static_cast<std::size_t>(done_matched_);
    if (at < done_data.size() && c == static_cast<unsigned char>(done_data[at]))
      ++done_matched_;
    else
      done_matched_ = -1;
  }
  usage_byte(c);
}

void stream_observer::dispatch(common::time_point now, chunk_result& r) {
  if (has_data_) {
    if (done_matched_ == static_cast<std::int8_t>(done_data.size())) {
      done_marker_ = true;
    } else {
      ++events_;
      ++r.events;
      if (!first_event_) {
        first_event_ = now;
        r.first = true;
      } else if (r.events == 1) {
        r.gap = now - *last_event_;
      }
      last_event_ = now;
    }
  }
  has_data_ = false;
  done_matched_ = 0;
  // Each event's data is a JSON document of its own: a key never spans two events.
  usage_at_ = usage_at::idle;
}

void stream_observer::usage_byte(unsigned char c) {
  switch (usage_at_) {
    case usage_at::idle:
      break;
    case usage_at::key:
      return usage_key_byte(c);
    case usage_at::colon:
      if (is_ws(c)) return;
      if (c != ':') break;
      usage_at_ = usage_at::value_start;
      return;
    case usage_at::value_start:
      if (is_ws(c)) return;
      if (!is_digit(c)) break;  // negative, a string or null: not a count
      usage_at_ = usage_at::digits;
      usage_value_ = c - '0';
      usage_overflow_ = false;
      return;
    case usage_at::digits:
      if (is_digit(c)) {
        const unsigned d = c - '0';
        if (usage_value_ > (std::numeric_limits<std::uint64_t>::max() - d) / 10)
          usage_overflow_ = true;
        else
          usage_value_ = usage_value_ * 10 + d;
        return;
      }
      // A fraction or exponent makes it no count, and one too big for 64 bits is garbage.
      if (c != '.' && c != 'e' && c != 'E' && !usage_overflow_) usage_commit();
      break;
  }
  // The byte that ends (or breaks) a match may open the next key.
  usage_at_ = usage_at::idle;
  if (c == '"') {
    usage_at_ = usage_at::key;
    usage_key_ = usage_key::none;
    candidates_ = all_keys;
    key_matched_ = 1;
  }
}

// Inside a JSON string every quote is escaped, so a raw `"prompt_tokens"` followed by a colon is
// a key wherever it occurs, and message text cannot fake one. No key is a prefix of another
// (each ends with its quote), so at most one matches in full.
void stream_observer::usage_key_byte(unsigned char c) {
  for (std::size_t k = 0; k < std::size(usage_keys); ++k) {
    if (!(candidates_ & (1u << k))) continue;
    const auto key = usage_keys[k];
    if (c != static_cast<unsigned char>(key[key_matched_])) {
      candidates_ &= static_cast<std::uint8_t>(~(1u << k));
    } else if (key_matched_ + 1u == key.size()) {
      usage_key_ = static_cast<usage_key>(k + 1);
      usage_at_ = usage_at::colon;
      return;
    }
  }
  if (candidates_ == 0) {
    usage_at_ = usage_at::idle;
    return usage_byte(c);  // this byte may be the quote that opens the next key
  }
  ++key_matched_;
}

void stream_observer::usage_commit() {
  switch (usage_key_) {
    case usage_key::prompt:
      prompt_tokens_ = usage_value_;
      break;
    case usage_key::completion:
      completion_tokens_ = usage_value_;
      break;
    case usage_key::cached:
      cached_tokens_ = usage_value_;
      break;
    case usage_key::none:
      break;
  }
}

}  // namespace meridian::upstream
