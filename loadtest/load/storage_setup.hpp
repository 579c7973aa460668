// Startup step of a storage run (calling thread, blocking): uploads every object once so that GETs
// find them.
#pragma once
#include "load/load.hpp"

namespace meridian::loadtest::runner {

void storage_setup(const load_config& cfg);

}  // namespace meridian::loadtest::runner
