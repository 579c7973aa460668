// Scenario files (YAML): the `load:` section configures meridian-load; the whole file can be dumped
// as JSON for the run-scenario script, which has no YAML parser of its own.
#pragma once
#include <string>

#include "load/load.hpp"

namespace meridian::loadtest {

// Applies the scenario's `load:` section onto cfg; returns an error message or empty.
std::string apply_scenario(const std::string& path, load_config& cfg);
// Converts a YAML file to JSON text (scalars that look numeric or boolean become numbers/booleans).
std::string yaml_file_to_json(const std::string& path);

}  // namespace meridian::loadtest
