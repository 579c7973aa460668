// Object resume: where a GET of an object stands (the bytes its response covers, the ETag that
// names the version, the body bytes the client has got) and the request that continues it on
// another replica when its own fails mid-body: a Range from the next byte, guarded by If-Range so
// that only the same version can answer it. One per client connection; worker thread only.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "meridian/http/parser.hpp"

namespace meridian::proxy {

class object_resume {
 public:
  // On the response head of a GET: true when its body can be continued elsewhere if it is cut
  // (200, or a single-range 206, with a Content-Length and a strong ETag).
  bool begin(const http::response_head& r);
  void reset() { *this = object_resume{}; }
  bool active() const { return active_; }

  // Body bytes relayed to the client.
  void delivered(std::size_t n) { delivered_ += n; }
  // The next byte of the object the client is owed, and the last one its response covers.
  std::uint64_t next() const { return first_ + delivered_; }
  std::uint64_t last() const { return last_; }
  const std::string& etag() const { return etag_; }

  // The continuation's request head from `head`, a request head as built for the backend:
  // without the client's Range and conditional headers, with Range from next() and If-Range.
  std::string continuation_head(std::string_view head) const;
  // Whether a continuation's response carries on where the body stopped: 206 for exactly
  // next()-last() of the same version. Else `why` says what it was.
  bool continues(const http::response_head& r, std::string& why) const;

 private:
  bool active_ = false;
  std::uint64_t first_ = 0, last_ = 0, delivered_ = 0;
  std::string etag_;
};

// `head` (a request head as built for the backend) without its Range and conditional headers,
// asking for bytes first-last instead, with If-Range `if_range` unless that is empty.
std::string ranged_head(std::string_view head, std::uint64_t first, std::uint64_t last,
                        std::string_view if_range);

// A whole decimal number, nothing else.
bool parse_uint(std::string_view s, std::uint64_t& out);
// "bytes FIRST-LAST/TOTAL" (TOTAL may be "*"); false when malformed. `total`, when given, gets
// TOTAL (0 for "*").
bool parse_content_range(std::string_view v, std::uint64_t& first, std::uint64_t& last,
                         std::uint64_t* total = nullptr);
// A strong ETag (quoted, not W/): one that names a single version byte for byte.
bool strong_etag(std::string_view etag);
// Whether `r` answers a Range for bytes first-last of the version `etag`: a 206 with exactly
// that Content-Range and Content-Length, and that ETag. Else `why` says what it was.
bool answers_range(const http::response_head& r, std::uint64_t first, std::uint64_t last,
                   std::string_view etag, std::string& why);

}  // namespace meridian::proxy
