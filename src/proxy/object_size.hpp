// The bytes a storage request is expected to move, for the bandwidth-aware pick: from the
// request's Range or body, else the object's size as a HEAD or GET answered earlier told it (a
// small bounded cache per worker), else assumed large. Worker thread only.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "meridian/http/parser.hpp"

namespace meridian::proxy {

// What is assumed of a GET whose size nothing tells: large enough that bandwidth decides.
inline constexpr double unknown_object_bytes = 64.0 * 1024 * 1024;

class object_sizes {
 public:
  explicit object_sizes(std::size_t capacity = 4096) : ring_(capacity) {}
  // An object's key: its cluster, host and path (a hash; a collision costs only an estimate).
  static std::uint64_t key_of(std::size_t cluster, std::string_view host, std::string_view path);
  std::optional<std::uint64_t> find(std::uint64_t key) const;
  // The oldest entry makes room when full.
  void put(std::uint64_t key, std::uint64_t size);
  // What a response to `method` says of the object's size: a 200's Content-Length (GET, HEAD),
  // a 206's Content-Range total.
  void learn(std::uint64_t key, std::string_view method, const http::response_head& r);
  std::size_t size() const { return map_.size(); }

 private:
  std::unordered_map<std::uint64_t, std::uint64_t> map_;
  std::vector<std::uint64_t> ring_;  // keys in insertion order, overwritten oldest first
  std::size_t next_ = 0;
};

// PUT: its body's length (`body`, unknown: large); GET: its Range, else `known` (the object's
// size); HEAD, DELETE and the rest: 0.
double expected_bytes(std::string_view method, std::string_view range,
                      std::optional<std::uint64_t> body, std::optional<std::uint64_t> known);

}  // namespace meridian::proxy
