// Parsing of the config's unit-bearing scalars ("250ms", "64KiB", "host:port"). Pure functions.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "meridian/config/config.hpp"

namespace meridian::config {

// "250ms", "2s", "1m", "1h", "500us", "0"; nullopt when malformed.
std::optional<duration> parse_duration(std::string_view text);
// "64KiB", "8MiB", "1GiB", "512", "10KB" (decimal); nullopt when malformed.
std::optional<std::uint64_t> parse_size(std::string_view text);
// "127.0.0.1:8080", "[::1]:80", "localhost:0"; nullopt when malformed.
std::optional<host_port> parse_host_port(std::string_view text);

}  // namespace meridian::config
