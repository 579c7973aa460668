// The LLM mock's gRPC front (KServe v2 / Triton over h2c) on the engine the OpenAI front uses.
#pragma once
#include <memory>

#include "mock/llm_impl.hpp"

namespace meridian::loadtest::llm {

// Serves h2c connections accepted on `acc` until the mock stops.
asio::awaitable<void> grpc_accept_loop(impl_t* self, std::shared_ptr<tcp::acceptor> acc);

}  // namespace meridian::loadtest::llm
