#include "meridian/routing/route_table.hpp"

namespace meridian::routing {
namespace {
std::string_view path_only(std::string_view target) {
  auto q = target.find('?');
  return q == std::string_view::npos ? target : target.substr(0, q);
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    auto x = static_cast<unsigned char>(a[i]), y = static_cast<unsigned char>(b[i]);
    if (x >= 'A' && x <= 'Z') x += 32;
    if (y >= 'A' && y <= 'Z') y += 32;
    if (x != y) return false;
  }
  return true;
}

std::string_view host_only(std::string_view host) {
  if (!host.empty() && host.front() == '[') {
    auto close = host.find(']');
    return close == std::string_view::npos ? host : host.substr(0, close + 1);
  }
  auto colon = host.rfind(':');
  return colon == std::string_view::npos ? host : host.substr(0, colon);
}
}  // namespace

route_table::route_table(const config::gateway_config& cfg) : routes_(cfg.routes) {}

match_result route_table::match(const request_view& req,
                                std::optional<std::string_view> model) const {
  auto path = path_only(req.path);
  auto host = host_only(req.host);
  for (std::size_t i = 0; i < routes_.size(); ++i) {
    const auto& m = routes_[i].match;
    if (m.path_prefix && path.substr(0, m.path_prefix->size()) != *m.path_prefix) continue;
    if (m.path && path != *m.path) continue;
    if (m.method && req.method != *m.method) continue;
    if (m.host && !iequals(host, *m.host)) continue;
    if (m.client_subject && req.client_subject != *m.client_subject) continue;
    bool headers_ok = true;
    for (const auto& hm : m.headers) {
      bool found = false;
      for (const auto& h : req.headers) {
        if (iequals(h.name, hm.name) && h.value == hm.value) {
          found = true;
          break;
        }
      }
      if (!found) {
        headers_ok = false;
        break;
      }
    }
    if (!headers_ok) continue;
    if (m.model) {
      if (!req.has_body) continue;
      if (!model) return {match_outcome::need_model, i};
      if (*model != *m.model) continue;
    }
    return {match_outcome::matched, i};
  }
  return {match_outcome::no_match, 0};
}

}  // namespace meridian::routing
