#include "meridian/http/request_body.hpp"

#include <algorithm>

namespace meridian::http {

void request_body::start(body_kind kind, std::uint64_t content_length, std::uint64_t max_payload) {
  kind_ = kind;
  max_ = max_payload;
  payload_ = 0;
  validated_ = 0;
  error_ = {};
  check_.reset();
  take_.reset();
  left_ = kind == body_kind::content_length ? content_length : 0;
  bool empty = kind == body_kind::none || (kind == body_kind::content_length && left_ == 0);
  status_ = empty ? status::complete : status::more;
  taken_all_ = empty;
}

request_body::status request_body::validate(std::string_view raw) {
  if (status_ != status::more) return status_;
  if (kind_ == body_kind::content_length) {
    auto n = static_cast<std::size_t>(std::min<std::uint64_t>(raw.size() - validated_, left_));
    validated_ += n;
    left_ -= n;
    payload_ += n;
    if (left_ == 0) status_ = status::complete;
    return status_;
  }
  std::string_view rest = raw.substr(validated_);
  while (!rest.empty() && !check_.done()) {
    auto st = check_.decode(rest);
    if (check_.failed()) {
      error_ = check_.error();
      return status_ = status::malformed;
    }
    validated_ += st.consumed;
    rest.remove_prefix(st.consumed);
    // A chunk that announces more than the limit allows is refused at its size line.
    if (check_.payload_bytes() + check_.announced() > max_) {
      error_ = "request body exceeds the size limit";
      return status_ = status::too_large;
    }
    if (st.consumed == 0) break;
  }
  payload_ = check_.payload_bytes();
  if (check_.done()) status_ = status::complete;
  return status_;
}

std::size_t request_body::take(std::string_view raw, std::string_view* spans, std::size_t max_spans,
                               std::size_t& n_spans) {
  n_spans = 0;
  std::size_t used = 0;
  if (kind_ == body_kind::content_length) {
    if (validated_ > 0 && max_spans > 0) {
      spans[n_spans++] = raw.substr(0, validated_);
      used = validated_;
    }
  } else if (kind_ == body_kind::chunked) {
    std::string_view rest = raw.substr(0, validated_);
    while (n_spans < max_spans && !rest.empty() && !take_.done()) {
      auto st = take_.decode(rest);
      if (!st.data.empty()) spans[n_spans++] = st.data;
      used += st.consumed;
      rest.remove_prefix(st.consumed);
      if (st.consumed == 0) break;
    }
  }
  validated_ -= used;
  if (complete() && validated_ == 0) taken_all_ = true;
  return used;
}

}  // namespace meridian::http
