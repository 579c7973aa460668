// Result collection: per-request accounting on the worker's own thread, then the merge of every
// worker's statistics into one run_summary on the calling thread once all workers have joined.
#pragma once
#include <memory>
#include <vector>

#include "load/worker.hpp"

namespace meridian::loadtest::runner {

// Accounts one finished (or unsent) request whose send was due at `intended`.
void record(worker* w, connection*, steady::time_point intended, steady::time_point sent_at,
            const outcome& o, int prompt_tokens);
// Merges the joined workers' statistics (the run began at `start`) and evaluates the SLOs.
run_summary summarize(const load_config& cfg, const std::vector<std::unique_ptr<worker>>& ws,
                      steady::time_point start);

}  // namespace meridian::loadtest::runner
