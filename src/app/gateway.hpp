// Wiring of a running gateway: metrics, workers, listeners, admin, signals and drain. Main thread.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "meridian/config/config.hpp"
#include "meridian/runtime/io_backend.hpp"

namespace meridian::app {

// Where a reload (SIGHUP, POST /admin/reload) reads the config from; throws config_error.
using config_source = std::function<std::shared_ptr<const config::gateway_config>()>;

// Runs until drained after SIGTERM/SIGINT or POST /admin/drain; returns the exit code.
int run_gateway(std::shared_ptr<const config::gateway_config> cfg, runtime::io_kind io,
                const std::string& io_reason, config_source source);

}  // namespace meridian::app
