// The OpenAI wire format as the LLM mock speaks it: request parsing, streamed chunks, whole bodies
// and error objects. Pure functions of their arguments; no I/O, callable from any thread.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace meridian::loadtest::llm {

enum class api { chat, completions, embeddings };

std::string json_quote(std::string_view s);
// The mock's generated text, a pure function of the context: each token is picked by a hash of
// the prompt and every token before it. So a generation continued from a partial answer (chat:
// the answer as a final assistant message with continue_final_message; completions: the prompt
// with the answer appended) goes on exactly as the unbroken one would have: the same context
// bytes give the same next token. (The prompt is the message contents concatenated, as
// parse_generation() reads them.)
class text_generator {
 public:
  explicit text_generator(std::string_view prompt) { mix(prompt); }
  std::string_view next();

 private:
  void mix(std::string_view bytes) {
    for (unsigned char c : bytes) h_ = (h_ ^ c) * 0x100000001b3ULL;
  }
  std::uint64_t h_ = 0xcbf29ce484222325ULL;  // FNV-1a
};

void append_error_json(std::string& out, int status, std::string_view message,
                       std::string_view type, std::string_view extra_headers, bool keep_alive);

struct parsed_request {
  std::string prompt;
  std::string model;
  int max_tokens = -1;
  bool stream = false;
  bool include_usage = false;
  int inputs = 1;  // embeddings
};

// Reads what the mock needs from a chat/completions/embeddings body; false + err on bad input.
bool parse_generation(std::string_view body, api kind, parsed_request& pr, std::string& err);

// Writes the SSE events of one streamed response.
struct chunk_writer {
  std::string id_json;     // "\"chatcmpl-...\""
  std::string model_json;  // quoted
  std::string created;
  api kind;

  void prefix(std::string& o, const char* object) const {
    o.append("data: {\"id\":").append(id_json).append(",\"object\":\"").append(object);
    o.append("\",\"created\":").append(created).append(",\"model\":").append(model_json);
  }
  void role(std::string& o) const {
    prefix(o, "chat.completion.chunk");
    o.append(
        ",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
        "\"logprobs\":null,"
        "\"finish_reason\":null}]}\n\n");
  }
  void token(std::string& o, std::string_view text, const char* finish) const {
    if (kind == api::chat) {
      prefix(o, "chat.completion.chunk");
      o.append(",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"")
          .append(text)
          .append("\"},\"logprobs\":null,");
    } else {
      prefix(o, "text_completion");
      o.append(",\"choices\":[{\"index\":0,\"text\":\"")
          .append(text)
          .append("\",\"logprobs\":null,");
    }
    if (finish)
      o.append("\"finish_reason\":\"").append(finish).append("\",\"stop_reason\":null}]}\n\n");
    else
      o.append("\"finish_reason\":null}]}\n\n");
  }
  // As vLLM with --enable-prompt-tokens-details: `cached` prompt tokens came from the cache.
  void usage(std::string& o, int p, int c, int cached) const {
    prefix(o, kind == api::chat ? "chat.completion.chunk" : "text_completion");
    o.append(",\"choices\":[],\"usage\":{\"prompt_tokens\":").append(std::to_string(p));
    o.append(",\"total_tokens\":").append(std::to_string(p + c));
    o.append(",\"completion_tokens\":").append(std::to_string(c));
    o.append(",\"prompt_tokens_details\":{\"cached_tokens\":")
        .append(std::to_string(cached))
        .append("}}}\n\n");
  }
};

// The body of a non-streamed chat or text completion.
std::string completion_body(const chunk_writer& cw, std::string_view prompt, int prompt_tokens,
                            int output_tokens, int cached_tokens, const char* finish);
// The body of an embeddings response with `inputs` vectors of `dim` numbers.
std::string embeddings_body(const chunk_writer& cw, int inputs, int dim, int prompt_tokens);
// The body of GET /v1/models.
std::string models_body(const std::string& model, int max_model_len);

}  // namespace meridian::loadtest::llm
