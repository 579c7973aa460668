// The route table (host, path, method, headers, JSON body "model") built from the config, and
// the body scan that finds the model. Immutable after construction; read by every worker.
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>
#include <vector>

#include "meridian/config/config.hpp"
#include "meridian/http/parser.hpp"

namespace meridian::routing {

enum class match_outcome { matched, no_match, need_model };

struct match_result {
  match_outcome outcome = match_outcome::no_match;
  std::size_t route = 0;
};

class route_table {
 public:
  explicit route_table(const config::gateway_config& cfg);

  // `model` is the body's model once it has been read; nullopt while unread. need_model means a
  // route that depends on the model would decide, so the caller should peek the body and retry.
  match_result match(const http::request_head& req, std::optional<std::string_view> model) const;

  const config::route_config& route(std::size_t i) const { return routes_[i]; }
  std::size_t size() const { return routes_.size(); }

 private:
  std::vector<config::route_config> routes_;
};

// Finds the top-level "model" string in a JSON object, scanning only as far as needed. Returns
// nullopt if the text is not an object, has no such key, or ends (truncated) before it.
std::optional<std::string_view> find_json_model(std::string_view body);

}  // namespace meridian::routing
