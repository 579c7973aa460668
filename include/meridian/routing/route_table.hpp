// The route table (host, path, method, headers, JSON body "model") built from the config. It
// matches a small request view, not HTTP types. Immutable after construction; read by every
// worker.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "meridian/common/field.hpp"
#include "meridian/config/config.hpp"

namespace meridian::routing {

// What routing may look at of a request; views into the caller's buffer.
struct request_view {
  std::string_view method;
  std::string_view path;  // origin-form, query included
  std::string_view host;  // Host header (port allowed)
  std::span<const common::field> headers;
  bool has_body = false;
  std::string_view client_subject;  // the verified client certificate's (mutual TLS), or empty
};

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
  match_result match(const request_view& req, std::optional<std::string_view> model) const;

  const config::route_config& route(std::size_t i) const { return routes_[i]; }
  std::size_t size() const { return routes_.size(); }

 private:
  std::vector<config::route_config> routes_;
};

}  // namespace meridian::routing
