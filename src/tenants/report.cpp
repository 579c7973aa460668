// What the tenants' state looks like from outside: Prometheus families and /admin/tenants.
#include <boost/json.hpp>

#include <chrono>

#include "meridian/common/log.hpp"
#include "meridian/tenants/tenants.hpp"

namespace meridian::tenants {

namespace {

const char* priority_name(config::request_priority p) {
  switch (p) {
    case config::request_priority::critical:
      return "critical";
    case config::request_priority::sheddable:
      return "sheddable";
    default:
      return "standard";
  }
}

}  // namespace

std::string metrics_text(const table& t) {
  std::string out;
  out +=
      "# HELP meridian_tenant_requests_total Requests by tenant and the status they got\n"
      "# TYPE meridian_tenant_requests_total counter\n";
  for (const auto& x : t.all())
    for (std::size_t code = 100; code < x.state->by_status.size(); ++code)
      if (auto n = x.state->by_status[code].load(std::memory_order_relaxed))
        out += common::cat("meridian_tenant_requests_total{tenant=\"", x.spec.name, "\",code=\"",
                           code, "\"} ", n, '\n');
  out +=
      "# HELP meridian_tenant_tokens_total Tokens used by tenant (usage, else counted in the "
      "stream, else the estimate)\n"
      "# TYPE meridian_tenant_tokens_total counter\n";
  for (const auto& x : t.all()) {
    out += common::cat("meridian_tenant_tokens_total{tenant=\"", x.spec.name, "\",kind=\"prompt\"} ",
                       x.state->prompt_tokens.load(std::memory_order_relaxed), '\n');
    out += common::cat("meridian_tenant_tokens_total{tenant=\"", x.spec.name,
                       "\",kind=\"completion\"} ",
                       x.state->completion_tokens.load(std::memory_order_relaxed), '\n');
  }
  out +=
      "# HELP meridian_tenant_rate_limited_total Requests refused with 429, by tenant and the "
      "limit that refused them\n"
      "# TYPE meridian_tenant_rate_limited_total counter\n";
  for (const auto& x : t.all()) {
    const auto& st = *x.state;
    for (std::size_t i = 0; i < st.limits.size(); ++i)
      out += common::cat("meridian_tenant_rate_limited_total{tenant=\"", x.spec.name,
                         "\",limit=\"", st.limits[i].name, "\"} ",
                         st.limited[i].load(std::memory_order_relaxed), '\n');
    if (x.spec.concurrent)
      out += common::cat("meridian_tenant_rate_limited_total{tenant=\"", x.spec.name,
                         "\",limit=\"concurrent\"} ",
                         st.limited.back().load(std::memory_order_relaxed), '\n');
  }
  out +=
      "# HELP meridian_tenant_in_flight Requests of the tenant being served now\n"
      "# TYPE meridian_tenant_in_flight gauge\n";
  for (const auto& x : t.all())
    out += common::cat("meridian_tenant_in_flight{tenant=\"", x.spec.name, "\"} ",
                       x.state->in_flight.load(std::memory_order_relaxed), '\n');
  return out;
}

std::string admin_json(const table& t, common::time_point now) {
  namespace json = boost::json;
  json::array list;
  for (const auto& x : t.all()) {
    const auto& st = *x.state;
    json::object o;
    o["name"] = x.spec.name;
    o["keys"] = x.spec.keys.size();  // how many, never which
    json::array models;
    for (const auto& m : x.spec.models) models.emplace_back(m);
    o["models"] = x.spec.models.empty() ? json::value("*") : json::value(std::move(models));
    o["priority"] = x.spec.priority ? json::value(priority_name(*x.spec.priority)) : nullptr;
    json::array limits;
    for (std::size_t i = 0; i < st.limits.size(); ++i) {
      const auto& lim = *st.limiters[i];
      json::object l;
      l["limit"] = st.limits[i].name;
      l["amount"] = st.limits[i].amount;
      l["remaining"] = std::floor(lim.remaining(now));
      l["reset_s"] = std::chrono::duration<double>(lim.until_full(now)).count();
      l["refused"] = st.limited[i].load(std::memory_order_relaxed);
      limits.push_back(std::move(l));
    }
    o["limits"] = std::move(limits);
    o["concurrent"] = x.spec.concurrent ? json::value(x.spec.concurrent) : nullptr;
    o["in_flight"] = st.in_flight.load(std::memory_order_relaxed);
    std::uint64_t requests = 0, limited = 0;
    for (const auto& n : st.by_status) requests += n.load(std::memory_order_relaxed);
    limited = st.by_status[429].load(std::memory_order_relaxed);
    o["requests"] = requests;
    o["rate_limited"] = limited;
    o["prompt_tokens"] = st.prompt_tokens.load(std::memory_order_relaxed);
    o["completion_tokens"] = st.completion_tokens.load(std::memory_order_relaxed);
    list.push_back(std::move(o));
  }
  json::object root;
  root["tenants"] = std::move(list);
  return json::serialize(root) + "\n";
}

}  // namespace meridian::tenants
