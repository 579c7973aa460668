// Discrete-time model of a continuous-batching LLM engine (slots, queue, prefix cache,
// batch-dependent decode); pure logic with no clock of its own, driven by one owner thread (the
// mock's engine loop).
#pragma once
#include <chrono>
#include <cstdint>
#include <deque>
#include <list>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace meridian::loadtest {

struct engine_params {
  int slots = 8;
  double prefill_us_per_token = 50;  // per uncached prompt token
  double decode_ms = 10;             // one decode step with a batch of one
  double decode_growth = 0.05;       // extra fraction of decode_ms per additional running sequence
  std::size_t cache_blocks = 16384;  // prefix-cache capacity in blocks
  int block_tokens = 16;
  std::int64_t kv_tokens = 0;  // KV capacity for kv_cache_usage_perc; 0 = slots * 4096
};

struct engine_event {
  std::uint64_t id;
  bool first;         // this token is the request's first
  bool finished;      // this token was the last one
  int cached_tokens;  // prompt tokens served from the prefix cache (vLLM's usage detail)
};

// Hashes of the prompt's full blocks, chained so a block only matches after an identical prefix.
std::vector<std::uint64_t> prefix_block_hashes(std::string_view prompt, int block_tokens,
                                               int bytes_per_token = 4);

class engine_model {
 public:
  explicit engine_model(engine_params p = {});
  void set_params(const engine_params& p);
  const engine_params& params() const { return p_; }

  std::uint64_t submit(int prompt_tokens, int output_tokens,
                       std::vector<std::uint64_t> block_hashes);
  // Forgets every cached prefix (a restarted engine).
  void clear_cache() {
    lru_.clear();
    cache_.clear();
  }
  // True if the request was still queued or running (and is now gone).
  bool cancel(std::uint64_t id);
  bool idle() const { return waiting_.empty() && running_.empty(); }

  // Admits queued requests into free slots and returns how long this step takes on the "GPU".
  std::chrono::nanoseconds begin_iteration();
  // Every sequence in the step emits one token; finished ones leave their slot.
  void end_iteration(std::vector<engine_event>& out);

  std::size_t waiting() const { return waiting_.size(); }
  std::size_t running() const { return running_.size(); }
  double kv_usage() const;
  std::uint64_t prompt_tokens_total() const { return prompt_tokens_total_; }
  std::uint64_t cached_tokens_total() const { return cached_tokens_total_; }
  std::uint64_t generated_tokens_total() const { return generated_tokens_total_; }

 private:
  struct seq {
    std::uint64_t id;
    int prompt_tokens;
    int output_tokens;
    int generated = 0;
    std::vector<std::uint64_t> blocks;
    int cached_tokens = 0;
  };
  int cached_prefix_blocks(const std::vector<std::uint64_t>& blocks);
  void insert_blocks(const std::vector<std::uint64_t>& blocks);

  engine_params p_;
  std::deque<seq> waiting_;
  std::vector<seq> running_;
  std::uint64_t next_id_ = 1;
  std::list<std::uint64_t> lru_;  // front = most recently used
  std::unordered_map<std::uint64_t, std::list<std::uint64_t>::iterator> cache_;
  std::uint64_t prompt_tokens_total_ = 0, cached_tokens_total_ = 0, generated_tokens_total_ = 0;
};

}  // namespace meridian::loadtest
