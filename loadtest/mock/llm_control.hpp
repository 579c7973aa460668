// The LLM mock's observable side: vLLM-style Prometheus text for GET /metrics, the JSON of
// GET /control, and POST /control's fault and engine settings. Callable from any thread.
#pragma once
#include <string>
#include <string_view>

#include "mock/llm_impl.hpp"

namespace meridian::loadtest::llm {

std::string metrics_text(const impl_t* self);
std::string control_text(const impl_t* self);
// Applies a JSON object of settings; false + err (and nothing applied) on bad input.
bool apply_control(impl_t* self, std::string_view body, std::string& err);

}  // namespace meridian::loadtest::llm
