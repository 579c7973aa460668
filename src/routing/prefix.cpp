#include "meridian/routing/prefix.hpp"

#include <algorithm>
#include <cstring>

namespace meridian::routing {
namespace {
constexpr std::uint64_t splitmix(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

std::uint64_t load64(const char* p) {
  std::uint64_t v;
  std::memcpy(&v, p, sizeof v);  // little-endian on every platform the gateway ships for
  return v;
}

// The block's bytes folded into the hash of everything before it.
std::uint64_t hash_block(std::uint64_t prev, std::string_view b) {
  std::uint64_t h = prev ^ (b.size() * 0x9E3779B97F4A7C15ull);
  std::size_t i = 0;
  for (; i + 8 <= b.size(); i += 8) {
    h ^= load64(b.data() + i) * 0xC2B2AE3D27D4EB4Full;
    h = ((h << 31) | (h >> 33)) * 0x9E3779B97F4A7C15ull;
  }
  std::uint64_t tail = 0;
  std::memcpy(&tail, b.data() + i, b.size() - i);
  h ^= tail * 0x165667B19E3779F9ull;
  return splitmix(h);
}

// Where the value of the token "key": begins in body, or npos.
std::size_t value_of(std::string_view body, std::string_view quoted_key) {
  for (std::size_t at = body.find(quoted_key); at != std::string_view::npos;
       at = body.find(quoted_key, at + 1)) {
    if (at > 0 && body[at - 1] == '\\') continue;  // an escaped quote inside a string
    std::size_t i = at + quoted_key.size();
    while (i < body.size() &&
           (body[i] == ' ' || body[i] == '\t' || body[i] == '\n' || body[i] == '\r'))
      ++i;
    if (i < body.size() && body[i] == ':') {
      ++i;
      while (i < body.size() &&
             (body[i] == ' ' || body[i] == '\t' || body[i] == '\n' || body[i] == '\r'))
        ++i;
      return i;
    }
  }
  return std::string_view::npos;
}
}  // namespace

std::string_view prompt_bytes(std::string_view body) {
  auto at = value_of(body, "\"messages\"");
  if (at == std::string_view::npos) at = value_of(body, "\"prompt\"");
  if (at == std::string_view::npos) return {};
  return body.substr(at);
}

void hash_blocks(std::string_view text, std::size_t block_bytes, std::size_t max_blocks,
                 std::vector<std::uint64_t>& out) {
  if (block_bytes == 0) return;
  std::uint64_t h = 0;
  for (std::size_t at = 0, n = 0; at + block_bytes <= text.size() && n < max_blocks;
       at += block_bytes, ++n) {
    h = hash_block(h, text.substr(at, block_bytes));
    out.push_back(h);
  }
}

std::uint64_t hash_key(std::string_view s) {
  std::uint64_t h = hash_block(0x5EED, s);
  return h != 0 ? h : 1;
}

std::uint64_t rendezvous_weight(std::uint64_t key, std::uint64_t endpoint) {
  return splitmix(key ^ splitmix(endpoint + 0x632BE59BD9B4E019ull));
}

// ---- the index -------------------------------------------------------------------------------

prefix_index::prefix_index(std::size_t capacity) : capacity_(std::max<std::size_t>(capacity, 1)) {
  slots_.reserve(capacity_);
  std::size_t size = 16;
  while (size < 2 * capacity_) size *= 2;
  table_.assign(size, 0);
  mask_ = size - 1;
}

void prefix_index::held(std::uint32_t endpoint, int delta) {
  if (endpoint == none) return;
  if (endpoint >= held_.size()) held_.resize(endpoint + 1, 0);
  held_[endpoint] += static_cast<std::size_t>(delta);  // wraps back for -1 on a count >= 1
}

std::uint32_t prefix_index::find(std::uint64_t hash) const {
  for (std::size_t i = hash & mask_;; i = (i + 1) & mask_) {
    std::uint32_t v = table_[i];
    if (v == 0) return none;
    if (slots_[v - 1].hash == hash) return v - 1;
  }
}

void prefix_index::table_insert(std::uint64_t hash, std::uint32_t slot) {
  std::size_t i = hash & mask_;
  while (table_[i] != 0) i = (i + 1) & mask_;
  table_[i] = slot + 1;
}

void prefix_index::table_erase(std::uint64_t hash) {
  std::size_t i = hash & mask_;
  while (slots_[table_[i] - 1].hash != hash) i = (i + 1) & mask_;
  // Backward shift: pull later entries of the run into the hole when their home allows it.
  for (std::size_t j = (i + 1) & mask_; table_[j] != 0; j = (j + 1) & mask_) {
    std::size_t home = slots_[table_[j] - 1].hash & mask_;
    if (((j - home) & mask_) >= ((j - i) & mask_)) {
      table_[i] = table_[j];
      i = j;
    }
  }
  table_[i] = 0;
}

void prefix_index::unlink(std::uint32_t s) {
  auto& e = slots_[s];
  if (e.prev != none)
    slots_[e.prev].next = e.next;
  else
    head_ = e.next;
  if (e.next != none)
    slots_[e.next].prev = e.prev;
  else
    tail_ = e.prev;
  e.prev = e.next = none;
}

void prefix_index::touch(std::uint32_t s) {
  if (head_ == s) return;
  if (slots_[s].prev != none || slots_[s].next != none || tail_ == s) unlink(s);
  slots_[s].next = head_;
  if (head_ != none) slots_[head_].prev = s;
  head_ = s;
  if (tail_ == none) tail_ = s;
}

std::uint32_t prefix_index::take_slot() {
  if (slots_.size() < capacity_) {
    slots_.emplace_back();
    return static_cast<std::uint32_t>(slots_.size() - 1);
  }
  std::uint32_t s = tail_;  // the least recently used block makes room
  unlink(s);
  table_erase(slots_[s].hash);
  for (auto ep : slots_[s].endpoints) held(ep, -1);
  slots_[s] = entry{};
  return s;
}

void prefix_index::match(std::span<const std::uint64_t> blocks,
                         std::span<std::uint32_t> matched) const {
  std::fill(matched.begin(), matched.end(), 0u);
  for (std::size_t k = 0; k < blocks.size(); ++k) {
    auto slot = find(blocks[k]);
    if (slot == none) return;
    bool any = false;
    for (auto ep : slots_[slot].endpoints) {
      if (ep < matched.size() && matched[ep] == k) {
        matched[ep] = static_cast<std::uint32_t>(k + 1);
        any = true;
      }
    }
    if (!any) return;
  }
}

void prefix_index::insert(std::span<const std::uint64_t> blocks, std::uint32_t endpoint) {
  // Last block first, so a prompt's first blocks (the ones other prompts share) are the most
  // recently used and the last to go.
  for (auto k = blocks.size(); k-- > 0;) {
    auto slot = find(blocks[k]);
    if (slot == none) {
      std::uint32_t s = take_slot();  // may evict the least recently used block
      slots_[s].hash = blocks[k];
      table_insert(blocks[k], s);
      slots_[s].endpoints[0] = endpoint;
      held(endpoint, +1);
      touch(s);
      continue;
    }
    auto& eps = slots_[slot].endpoints;
    // Most recent first: move (or bring) the endpoint to the front, dropping the oldest.
    auto at = std::find(std::begin(eps), std::end(eps), endpoint);
    if (at == std::end(eps)) {
      at = std::end(eps) - 1;
      held(*at, -1);
      held(endpoint, +1);
    }
    std::move_backward(std::begin(eps), at, at + 1);
    eps[0] = endpoint;
    touch(slot);
  }
}

void prefix_index::forget(std::uint32_t endpoint) {
  for (auto& e : slots_) {
    auto* end = std::remove(std::begin(e.endpoints), std::end(e.endpoints), endpoint);
    std::fill(end, std::end(e.endpoints), none);
  }
  if (endpoint < held_.size()) held_[endpoint] = 0;
}

void prefix_index::renumber(std::span<const std::uint32_t> new_of_old) {
  auto to = [&](std::uint32_t e) { return e < new_of_old.size() ? new_of_old[e] : none; };
  std::vector<std::size_t> held(held_.size());
  for (std::size_t e = 0; e < held_.size(); ++e) {
    auto n = to(static_cast<std::uint32_t>(e));
    if (n == none) continue;
    if (n >= held.size()) held.resize(n + 1, 0);
    held[n] = held_[e];
  }
  held_ = std::move(held);
  for (auto& s : slots_) {
    for (auto& e : s.endpoints)
      if (e != none) e = to(e);
    auto* end = std::remove(std::begin(s.endpoints), std::end(s.endpoints), none);
    std::fill(end, std::end(s.endpoints), none);
  }
}

std::size_t prefix_index::blocks_of(std::uint32_t endpoint) const {
  return endpoint < held_.size() ? held_[endpoint] : 0;
}

}  // namespace meridian::routing
