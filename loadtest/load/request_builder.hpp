// Builds the bytes of each request (OpenAI JSON, storage PUT/GET, or one fixed request) into a
// connection-owned string; prompts are deterministic per seed. One per worker thread.
#pragma once
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "load/load.hpp"

namespace meridian::loadtest::runner {

class request_builder {
 public:
  request_builder(const load_config& cfg, std::uint64_t seed);

  static constexpr std::size_t corpus_tokens = 1 << 16;
  const std::string& fixed() const { return fixed_; }
  bool is_fixed() const { return !fixed_.empty(); }
  bool last_is_head() const { return last_head_; }
  int last_prompt_tokens() const { return last_prompt_tokens_; }
  std::string_view extra_body() const { return extra_; }

  void build(std::string& out, std::uint64_t seq);

 private:
  void build_storage(std::string& out);
  void build_kserve(std::string& out, int prompt_tokens, std::uint64_t seq);
  void build_single(int prompt_tokens, std::uint64_t seq);
  void build_prompt(std::string_view escaped);
  void build_conversation(std::uint64_t seq);
  // Appends n corpus tokens from places drawn from r.
  void append_corpus(std::mt19937_64& r, int n);
  // Appends n corpus tokens from a deterministic place for `key` (same key, same text).
  int append_text(std::uint64_t key, int n);

  struct conversation {
    std::uint64_t id = 0;  // bumps when it starts over
    int turn = 0;
  };
  std::vector<conversation> conversations_;

  const load_config& cfg_;
  std::mt19937_64 rng_;
  std::string corpus_, body_, fixed_, host_header_, object_body_;
  std::string_view extra_;
  bool last_head_ = false;
  int last_prompt_tokens_ = 0;
  std::uint64_t dataset_start_ = 0;
};

}  // namespace meridian::loadtest::runner
