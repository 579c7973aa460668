// Prompt-prefix affinity, the building blocks: chained block hashes of a prompt, an approximate
// index of which endpoint recently served which blocks, and rendezvous (highest random weight)
// hashing so that gateway replicas with cold, private indexes still send one prefix to the
// same few endpoints. No tokenizer and no engine events: a block is a run of bytes of the
// request body, and the index is what this gateway itself dispatched.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace meridian::routing {

// The raw JSON of the prompt in an OpenAI-shaped body: from the value of its "messages" key
// (chat: messages rendered in order, as the client serialised them) or else of "prompt"
// (completions), to the end of what `body` holds. Empty when neither key is there. The key is
// found as a token (an unescaped quote, the name, a colon): a string value cannot hold one,
// since its quotes are escaped.
std::string_view prompt_bytes(std::string_view body);

// Appends the chained hashes of `text`'s whole blocks of `block_bytes` (at most `max_blocks`):
// block k's hash covers every byte before its end, so equal hashes mean equal prefixes. The
// last, partial block is left out: only whole blocks can be shared. Stable across processes
// and builds (replicas must agree).
void hash_blocks(std::string_view text, std::size_t block_bytes, std::size_t max_blocks,
                 std::vector<std::uint64_t>& out);

// Which endpoints recently received which prompt blocks, per cluster and worker: at most
// `capacity` blocks, least recently used first out, each remembering up to `ways` endpoints
// (the most recent first). Memory is bounded by capacity whatever the traffic.
class prefix_index {
 public:
  static constexpr std::size_t ways = 4;
  explicit prefix_index(std::size_t capacity);

  // matched[e] = how many leading blocks of `blocks` endpoint e is believed to hold, for every
  // e < matched.size() (endpoints are small integers: their index in the cluster).
  void match(std::span<const std::uint64_t> blocks, std::span<std::uint32_t> matched) const;
  // `endpoint` was sent a prompt with these blocks: it holds them now.
  void insert(std::span<const std::uint64_t> blocks, std::uint32_t endpoint);
  // The endpoint went away or lost its cache (restart): it holds nothing any more.
  void forget(std::uint32_t endpoint);
  // The cluster's endpoints were renumbered (a reload or DNS change): endpoint e is now
  // new_of_old[e], or gone when that is 0xffffffff (or e is past its end).
  void renumber(std::span<const std::uint32_t> new_of_old);
  // Blocks held per endpoint (for /admin/endpoints).
  std::size_t blocks_of(std::uint32_t endpoint) const;
  std::size_t size() const { return slots_.size(); }
  std::size_t capacity() const { return capacity_; }

 private:
  static constexpr std::uint32_t none = 0xffffffffu;
  struct entry {
    std::uint64_t hash = 0;
    std::uint32_t prev = none, next = none;  // LRU list, most recent at head_
    std::uint32_t endpoints[ways] = {none, none, none, none};
  };
  void touch(std::uint32_t slot);
  void unlink(std::uint32_t slot);
  std::uint32_t take_slot();
  // Open addressing (linear probing, backward-shift deletion) from block hash to slot: no
  // allocation per block, at most half full.
  std::uint32_t find(std::uint64_t hash) const;
  void table_insert(std::uint64_t hash, std::uint32_t slot);
  void table_erase(std::uint64_t hash);
  void held(std::uint32_t endpoint, int delta);

  std::size_t capacity_;
  std::vector<entry> slots_;
  std::vector<std::uint32_t> table_;  // slot + 1, 0 = empty
  std::vector<std::size_t> held_;     // blocks per endpoint
  std::size_t mask_ = 0;
  std::uint32_t head_ = none, tail_ = none;
};

// A stable 64-bit hash of a short string (a session id, an address); never 0.
std::uint64_t hash_key(std::string_view s);

// The rendezvous weight of an endpoint for a key (the highest weights are the key's preferred
// endpoints): a pure function of the two, so independent replicas rank alike.
std::uint64_t rendezvous_weight(std::uint64_t key, std::uint64_t endpoint);

}  // namespace meridian::routing
