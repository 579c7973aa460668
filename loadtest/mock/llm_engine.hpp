// The LLM mock's engine side: one loop on the engine executor runs engine_model iterations and
// posts tokens to the connections; connections reach it only by posting (submit, cancel). Stalls
// (POST /control stall_ms) pause the engine loop and the endpoints that wait_stall.
#pragma once
#include <memory>

#include "mock/llm_impl.hpp"

namespace meridian::loadtest::llm {

asio::awaitable<void> sleep_until(steady::time_point tp);
// Returns once an injected stall (if any) is over.
asio::awaitable<void> wait_stall(impl_t* self);
asio::awaitable<void> engine_loop(impl_t* self);
void submit_to_engine(impl_t* self, std::shared_ptr<gen_request> r);
void cancel_in_engine(impl_t* self, std::shared_ptr<gen_request> r, bool count_stop);

}  // namespace meridian::loadtest::llm
