#include "load/request_builder.hpp"

#include <algorithm>
#include <cstdio>

#include "common/net.hpp"

namespace meridian::loadtest::runner {

request_builder::request_builder(const load_config& cfg, std::uint64_t seed)
    : cfg_(cfg), rng_(seed) {
  if (cfg.dataset) dataset_start_ = rng_() % cfg.dataset->size();
  // Every token is 4 bytes (" abc") so the mock's bytes/4 token estimate matches what we asked
  // for.
  std::mt19937_64 corpus_rng(0xC0FFEE);  // same corpus (and shared prefix) in every worker
  corpus_.reserve(4 * corpus_tokens);
  for (std::size_t i = 0; i < corpus_tokens; ++i) {
    corpus_.push_back(' ');
    for (int k = 0; k < 3; ++k) corpus_.push_back(static_cast<char>('a' + corpus_rng() % 26));
  }
  std::string path = cfg.path;
  host_header_ = "Host: " + cfg.host + ":" + std::to_string(cfg.port) + "\r\n";
  for (const auto& h : cfg.headers) host_header_ += h + "\r\n";  // --header: on every request
  if (cfg.api == openai_api::none && !cfg.storage) {
    fixed_ = cfg.method + " " + path + " HTTP/1.1\r\n" + host_header_;
    if (!cfg.body.empty())
      fixed_ +=
          "Content-Type: application/json\r\nContent-Length: " + std::to_string(cfg.body.size()) +
          "\r\n";
    fixed_ += "\r\n" + cfg.body;
  }
  conversations_.resize(static_cast<std::size_t>(std::max(0, cfg.conversations)));
  for (std::size_t i = 0; i < conversations_.size(); ++i) conversations_[i].id = i;
  if (cfg.storage) {
    object_body_.assign(static_cast<std::size_t>(cfg.object_size), 'x');
    for (std::size_t i = 0; i < object_body_.size(); i += 61)
      object_body_[i] = static_cast<char>('a' + i % 26);
  }
}

void request_builder::build(std::string& out, std::uint64_t seq) {
  out.clear();
  extra_ = {};
  last_head_ = false;
  if (cfg_.storage) return build_storage(out);
  int p = static_cast<int>(std::max<std::int64_t>(1, cfg_.prompt_tokens.sample(rng_)));
  int m = static_cast<int>(std::max<std::int64_t>(1, cfg_.max_tokens.sample(rng_)));
  body_.clear();
  if (cfg_.api == openai_api::kserve) return build_kserve(out, p, seq);
  if (cfg_.dataset) {
    // Replayed in order from a place the seed picks (each worker its own), round and round.
    const auto& d = *cfg_.dataset;
    const auto& e = d[(seq + dataset_start_) % d.size()];
    m = e.output_tokens;
    last_prompt_tokens_ = e.prompt_tokens;
    build_prompt(e.prompt);
  } else if (!conversations_.empty()) {
    build_conversation(seq);  // counts its own prompt
  } else {
    last_prompt_tokens_ = p;
    build_single(p, seq);
  }
  if (cfg_.api != openai_api::embeddings) {
    body_ += ",\"max_tokens\":";
    append_uint(body_, static_cast<std::uint64_t>(m));
    if (cfg_.stream) body_ += ",\"stream\":true,\"stream_options\":{\"include_usage\":true}";
  }
  body_ += "}";
  out += "POST ";
  out += cfg_.path;
  out += " HTTP/1.1\r\n";
  out += host_header_;
  out += "Content-Type: application/json\r\nContent-Length: ";
  append_uint(out, body_.size());
  out += "\r\n\r\n";
  out += body_;
}

// One prompt given whole (JSON-escaped): a dataset's.
void request_builder::build_prompt(std::string_view escaped) {
  body_ += "{\"model\":\"";
  body_ += cfg_.model;
  body_ += cfg_.api == openai_api::chat ? "\",\"messages\":[{\"role\":\"user\",\"content\":\""
                                        : "\",\"prompt\":\"";
  body_ += escaped;
  body_ += cfg_.api == openai_api::chat ? "\"}]" : "\"";
}

// One prompt: a shared prefix from the corpus start, a unique tag, then random corpus text.
void request_builder::build_single(int p, std::uint64_t seq) {
  body_ += "{\"model\":\"";
  body_ += cfg_.model;
  if (cfg_.api == openai_api::chat)
    body_ += "\",\"messages\":[{\"role\":\"user\",\"content\":\"";
  else if (cfg_.api == openai_api::completions)
    body_ += "\",\"prompt\":\"";
  else
    body_ += "\",\"input\":\"";
  const int shared = std::min(cfg_.shared_prefix, p);
  body_.append(corpus_.data(), static_cast<std::size_t>(shared) * 4);
  int left = p - shared;
  if (left >= 3) {
    char tag[16];
    std::snprintf(tag, sizeof tag, " r%010llu",
                  static_cast<unsigned long long>(seq % 10000000000ull));
    body_.append(tag, 12);
    left -= 3;
  }
  append_corpus(rng_, left);
  if (cfg_.api == openai_api::chat)
    body_ += "\"}]";
  else
    body_ += "\"";
}

void request_builder::append_corpus(std::mt19937_64& r, int n) {
  while (n > 0) {
    const std::size_t take = std::min<std::size_t>(static_cast<std::size_t>(n), corpus_tokens / 2);
    const std::size_t off = r() % (corpus_tokens - take);
    body_.append(corpus_.data() + off * 4, take * 4);
    n -= static_cast<int>(take);
  }
}

int request_builder::append_text(std::uint64_t key, int n) {
  std::mt19937_64 r(key * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull);
  append_corpus(r, n);
  return n;
}

// The next turn of a conversation: its system prompt, then every earlier turn (user message and
// reply, the same text each time), then the new user message. Lengths come from the turn's own
// seed, so the history is replayed byte for byte.
void request_builder::build_conversation(std::uint64_t seq) {
  (void)seq;
  auto& c = conversations_[rng_() % conversations_.size()];
  if (c.turn >= cfg_.turns) {
    c.id += conversations_.size();
    c.turn = 0;
  }
  const std::uint64_t system = c.id % static_cast<std::uint64_t>(cfg_.system_prompts);
  body_ += "{\"model\":\"";
  body_ += cfg_.model;
  body_ += "\",\"messages\":[{\"role\":\"system\",\"content\":\"";
  int tokens = append_text(0x5157E400 + system, cfg_.system_tokens);
  for (int t = 0; t <= c.turn; ++t) {
    const std::uint64_t key = (c.id << 16) ^ static_cast<std::uint64_t>(t);
    std::mt19937_64 r(key);
    const int user = static_cast<int>(std::max<std::int64_t>(1, cfg_.prompt_tokens.sample(r)));
    const int reply = static_cast<int>(std::max<std::int64_t>(1, cfg_.max_tokens.sample(r)));
    char tag[40];
    std::snprintf(tag, sizeof tag, " c%llut%d", static_cast<unsigned long long>(c.id), t);
    body_ += "\"},{\"role\":\"user\",\"content\":\"";
    body_ += tag;
    tokens += append_text(key * 2 + 1, user);
    if (t == c.turn) break;
    body_ += "\"},{\"role\":\"assistant\",\"content\":\"";
    tokens += append_text(key * 2 + 2, reply);
  }
  body_ += "\"}]";
  ++c.turn;
  last_prompt_tokens_ = tokens;
}

namespace {

void put_varint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void put_bytes(std::string& out, int field, std::string_view v) {
  put_varint(out, static_cast<std::uint64_t>(field) << 3 | 2);
  put_varint(out, v.size());
  out.append(v);
}

}  // namespace

// A KServe v2 ModelInferRequest (model_name 1, id 3, the prompt's text as raw_input_contents 7)
// in one gRPC message. The output length is the engine's own (KServe has no max_tokens field).
void request_builder::build_kserve(std::string& out, int p, std::uint64_t seq) {
  last_prompt_tokens_ = p;
  std::string prompt;
  std::swap(prompt, body_);
  append_corpus(rng_, p);
  std::swap(prompt, body_);
  std::string msg;
  put_bytes(msg, 1, cfg_.model);
  put_bytes(msg, 3, "r" + std::to_string(seq));
  put_bytes(msg, 7, prompt);
  body_.push_back('\0');
  for (int shift = 24; shift >= 0; shift -= 8)
    body_.push_back(static_cast<char>((msg.size() >> shift) & 0xff));
  body_ += msg;
  out += "POST ";
  out += cfg_.path;
  out += " HTTP/1.1\r\n";
  out += host_header_;
  out += "Content-Type: application/grpc\r\nTE: trailers\r\nContent-Length: ";
  append_uint(out, body_.size());
  out += "\r\n\r\n";
  out += body_;
}

void request_builder::build_storage(std::string& out) {
  std::uniform_real_distribution<double> u(0, 1);
  const auto k = rng_() % static_cast<std::uint64_t>(std::max(1, cfg_.objects));
  const double r = u(rng_);
  std::string key = cfg_.path;
  if (key.empty() || key.back() != '/') key += '/';
  key += "obj-" + std::to_string(k);
  if (r < cfg_.put_ratio) {
    out = "PUT " + key + " HTTP/1.1\r\n" + host_header_ +
          "Content-Length: " + std::to_string(object_body_.size()) + "\r\n\r\n";
    extra_ = object_body_;
  } else {
    out = "GET " + key + " HTTP/1.1\r\n" + host_header_;
    if (u(rng_) < cfg_.range_ratio && cfg_.object_size > 1) {
      auto a = rng_() % cfg_.object_size;
      auto b = std::min<std::uint64_t>(cfg_.object_size - 1, a + rng_() % 4096);
      out += "Range: bytes=" + std::to_string(a) + "-" + std::to_string(b) + "\r\n";
    }
    out += "\r\n";
  }
  last_prompt_tokens_ = 0;
}

}  // namespace meridian::loadtest::runner
