// The LLM mock's generation endpoints (chat, completions, embeddings): parse, apply the injected
// faults, queue on the engine, then stream the tokens as they come or answer once generation ends.
// Runs on the connection's executor.
#pragma once
#include <memory>
#include <string>

#include "mock/llm_impl.hpp"
#include "mock/llm_openai.hpp"

namespace meridian::loadtest::llm {

// Handles one generation request; returns false when the connection must close.
asio::awaitable<bool> handle_generation(impl_t* self, std::shared_ptr<timed_socket> ts, api kind,
                                        std::string body, bool keep_alive);

}  // namespace meridian::loadtest::llm
