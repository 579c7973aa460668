// The bytes a storage request is expected to move, for the bandwidth-aware pick and for striping:
// from the request's Range or body, else the object's size as a HEAD or GET answered earlier told
// any worker (a bounded table every worker shares), else assumed large.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>

#include "meridian/http/parser.hpp"

namespace meridian::proxy {

// What is assumed of a GET whose size nothing tells: large enough that bandwidth decides.
inline constexpr double unknown_object_bytes = 64.0 * 1024 * 1024;

// Objects' sizes by key, shared by every worker: a fixed table of `capacity` slots (a power of
// two), each key in the slot its hash names, a newer key overwriting an older one there. Reads and
// writes take no lock: each slot is a seqlock (a writer makes its sequence odd while it writes; a
// reader that sees it odd or changed finds nothing), so a read never returns one key's size for
// another. Any thread.
class object_sizes {
 public:
  explicit object_sizes(std::size_t capacity = 16384);
  // An object's key: its cluster, host and path (a hash, never 0; a collision costs only an
  // estimate or a striping decision that part 0's answer corrects).
  static std::uint64_t key_of(std::size_t cluster, std::string_view host, std::string_view path);
  std::optional<std::uint64_t> find(std::uint64_t key) const;
  void put(std::uint64_t key, std::uint64_t size);
  // What a response to `method` says of the object's size: a 200's Content-Length (GET, HEAD),
  // a 206's Content-Range total.
  void learn(std::uint64_t key, std::string_view method, const http::response_head& r);
  std::size_t capacity() const { return mask_ + 1; }

 private:
  struct slot {
    std::atomic<std::uint32_t> seq{0};
    std::atomic<std::uint64_t> key{0}, size{0};
  };
  std::unique_ptr<slot[]> slots_;
  std::size_t mask_;
};

// PUT: its body's length (`body`, unknown: large); GET: its Range, else `known` (the object's
// size); HEAD, DELETE and the rest: 0.
double expected_bytes(std::string_view method, std::string_view range,
                      std::optional<std::uint64_t> body, std::optional<std::uint64_t> known);

}  // namespace meridian::proxy
