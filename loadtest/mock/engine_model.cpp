#include "mock/engine_model.hpp"

#include <algorithm>
#include <cmath>

namespace meridian::loadtest {

std::vector<std::uint64_t> prefix_block_hashes(std::string_view prompt, int block_tokens,
                                               int bytes_per_token) {
  std::vector<std::uint64_t> out;
  const std::size_t block_bytes =
      static_cast<std::size_t>(std::max(1, block_tokens * bytes_per_token));
  out.reserve(prompt.size() / block_bytes);
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a, chained across blocks
  for (std::size_t off = 0; off + block_bytes <= prompt.size(); off += block_bytes) {
    for (std::size_t i = off; i < off + block_bytes; ++i) {
      h ^= static_cast<unsigned char>(prompt[i]);
      h *= 1099511628211ull;
    }
    out.push_back(h);
  }
  return out;
}

engine_model::engine_model(engine_params p) : p_(p) {}

void engine_model::set_params(const engine_params& p) {
  p_ = p;
  if (p_.slots < 1) p_.slots = 1;
  while (cache_.size() > p_.cache_blocks && !lru_.empty()) {
    cache_.erase(lru_.back());
    lru_.pop_back();
  }
}

std::uint64_t engine_model::submit(int prompt_tokens, int output_tokens,
                                   std::vector<std::uint64_t> blocks) {
  seq s{next_id_++, std::max(prompt_tokens, 1), std::max(output_tokens, 1), 0, std::move(blocks)};
  waiting_.push_back(std::move(s));
  return waiting_.back().id;
}

bool engine_model::cancel(std::uint64_t id) {
  auto w = std::find_if(waiting_.begin(), waiting_.end(), [&](auto& s) { return s.id == id; });
  if (w != waiting_.end()) {
    waiting_.erase(w);
    return true;
  }
  auto r = std::find_if(running_.begin(), running_.end(), [&](auto& s) { return s.id == id; });
  if (r != running_.end()) {
    running_.erase(r);
    return true;
  }
  return false;
}

int engine_model::cached_prefix_blocks(const std::vector<std::uint64_t>& blocks) {
  int n = 0;
  for (auto h : blocks) {
    auto it = cache_.find(h);
    if (it == cache_.end()) break;
    lru_.splice(lru_.begin(), lru_, it->second);
    ++n;
  }
  return n;
}

void engine_model::insert_blocks(const std::vector<std::uint64_t>& blocks) {
  if (p_.cache_blocks == 0) return;
  for (auto h : blocks) {
    auto it = cache_.find(h);
    if (it != cache_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      continue;
    }
    lru_.push_front(h);
    cache_.emplace(h, lru_.begin());
    if (cache_.size() > p_.cache_blocks) {
      cache_.erase(lru_.back());
      lru_.pop_back();
    }
  }
}

std::chrono::nanoseconds engine_model::begin_iteration() {
  double prefill_us = 0;
  while (!waiting_.empty() && static_cast<int>(running_.size()) < p_.slots) {
    seq s = std::move(waiting_.front());
    waiting_.pop_front();
    const int cached_blocks = cached_prefix_blocks(s.blocks);
    const int cached_tokens = std::min(cached_blocks * p_.block_tokens, s.prompt_tokens);
    prefill_us += static_cast<double>(s.prompt_tokens - cached_tokens) * p_.prefill_us_per_token;
    prompt_tokens_total_ += static_cast<std::uint64_t>(s.prompt_tokens);
    cached_tokens_total_ += static_cast<std::uint64_t>(cached_tokens);
    s.cached_tokens = cached_tokens;
    insert_blocks(s.blocks);
    running_.push_back(std::move(s));
  }
  if (running_.empty()) return std::chrono::nanoseconds(0);
  const double batch = static_cast<double>(running_.size());
  const double decode_us = p_.decode_ms * 1000.0 * (1.0 + p_.decode_growth * (batch - 1.0));
  return std::chrono::nanoseconds(
      static_cast<std::int64_t>(std::llround((prefill_us + decode_us) * 1000.0)));
}

void engine_model::end_iteration(std::vector<engine_event>& out) {
  for (auto& s : running_) {
    ++s.generated;
    ++generated_tokens_total_;
    out.push_back({s.id, s.generated == 1, s.generated >= s.output_tokens, s.cached_tokens});
  }
  std::erase_if(running_, [](const seq& s) { return s.generated >= s.output_tokens; });
}

double engine_model::kv_usage() const {
  const double cap = static_cast<double>(
      p_.kv_tokens > 0 ? p_.kv_tokens : static_cast<std::int64_t>(p_.slots) * 4096);
  double used = 0;
  for (auto& s : running_) used += s.prompt_tokens + s.generated;
  return std::min(1.0, used / cap);
}

}  // namespace meridian::loadtest
