#include "load/slo.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdio>

#include "common/parse.hpp"

namespace meridian::loadtest {

bool slo::holds(double v) const {
  switch (op) {
    case slo_op::le:
      return v <= threshold;
    case slo_op::lt:
      return v < threshold;
    case slo_op::ge:
      return v >= threshold;
    case slo_op::gt:
      return v > threshold;
  }
  return false;
}

std::string with_unit(slo_metric m, double v) {
  char buf[64];
  switch (m) {
    case slo_metric::error_rate:
    case slo_metric::late_rate:
      std::snprintf(buf, sizeof buf, "%.3g%%", v * 100);
      break;
    case slo_metric::request_throughput:
    case slo_metric::goodput:
      std::snprintf(buf, sizeof buf, "%.2f req/s", v);
      break;
    default:
      std::snprintf(buf, sizeof buf, "%.1f ms", v);
  }
  return buf;
}

double stat_percentile(slo_stat s) {
  switch (s) {
    case slo_stat::p50:
      return 50;
    case slo_stat::p90:
      return 90;
    case slo_stat::p95:
      return 95;
    case slo_stat::p99:
      return 99;
    case slo_stat::p999:
      return 99.9;
    case slo_stat::p9999:
      return 99.99;
    case slo_stat::max:
      return 100;
    default:
      return -1;
  }
}

namespace {
std::string_view trim(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return s;
}

std::optional<slo> parse_one(std::string_view item, std::string& err) {
  slo out{};
  out.text = std::string(item);
  std::size_t op_pos = item.find_first_of("<>");
  if (op_pos == std::string_view::npos) {
    err = "SLO '" + out.text + "' has no comparison (<=, <, >=, >)";
    return std::nullopt;
  }
  std::string_view lhs = trim(item.substr(0, op_pos));
  std::string_view rest = item.substr(op_pos);
  if (rest.starts_with("<="))
    out.op = slo_op::le, rest.remove_prefix(2);
  else if (rest.starts_with(">="))
    out.op = slo_op::ge, rest.remove_prefix(2);
  else if (rest.starts_with("<"))
    out.op = slo_op::lt, rest.remove_prefix(1);
  else
    out.op = slo_op::gt, rest.remove_prefix(1);
  std::string_view rhs = trim(rest);

  struct named {
    std::string_view name;
    slo_metric m;
  };
  static constexpr named latency[] = {{"ttft", slo_metric::ttft},
                                      {"tpot", slo_metric::tpot},
                                      {"itl", slo_metric::itl},
                                      {"e2el", slo_metric::e2el}};
  bool found = false;
  for (auto& n : latency) {
    if (lhs.starts_with(n.name) && lhs.size() > n.name.size() && lhs[n.name.size()] == '_') {
      std::string_view st = lhs.substr(n.name.size() + 1);
      static constexpr std::pair<std::string_view, slo_stat> stats[] = {
          {"mean", slo_stat::mean}, {"p50", slo_stat::p50},     {"median", slo_stat::p50},
          {"p90", slo_stat::p90},   {"p95", slo_stat::p95},     {"p99", slo_stat::p99},
          {"p999", slo_stat::p999}, {"p9999", slo_stat::p9999}, {"max", slo_stat::max}};
      auto it =
          std::find_if(std::begin(stats), std::end(stats), [&](auto& p) { return p.first == st; });
      if (it == std::end(stats)) {
        err = "SLO '" + out.text + "': unknown statistic '" + std::string(st) + "'";
        return std::nullopt;
      }
      out.metric = n.m;
      out.stat = it->second;
      auto d = parse_duration(rhs);
      if (!d) {
        err = "SLO '" + out.text + "': '" + std::string(rhs) + "' is not a duration (e.g. 50ms)";
        return std::nullopt;
      }
      out.threshold = static_cast<double>(d->count()) / 1e6;
      found = true;
      break;
    }
  }
  if (!found) {
    if (lhs == "error_rate" || lhs == "late_rate") {
      out.metric = lhs == "error_rate" ? slo_metric::error_rate : slo_metric::late_rate;
      bool pct = rhs.ends_with("%");
      if (pct) rhs.remove_suffix(1);
      auto v = parse_double(rhs);
      if (!v || *v < 0) {
        err = "SLO '" + out.text + "': bad rate";
        return std::nullopt;
      }
      out.threshold = pct ? *v / 100 : *v;
    } else if (lhs == "request_throughput" || lhs == "goodput") {
      out.metric = lhs == "goodput" ? slo_metric::goodput : slo_metric::request_throughput;
      auto v = parse_double(rhs);
      if (!v || *v < 0) {
        err = "SLO '" + out.text + "': bad throughput";
        return std::nullopt;
      }
      out.threshold = *v;
    } else {
      err = "SLO '" + out.text +
            "': unknown metric (use ttft_/tpot_/itl_/e2el_<stat>, error_rate, late_rate, "
            "request_throughput, goodput)";
      return std::nullopt;
    }
  }
  return out;
}
}  // namespace

std::optional<std::vector<slo>> parse_slos(std::string_view text, std::string& err) {
  std::vector<slo> out;
  while (!text.empty()) {
    auto c = text.find(',');
    std::string_view item = trim(text.substr(0, c));
    text = c == std::string_view::npos ? std::string_view{} : text.substr(c + 1);
    if (item.empty()) continue;
    auto s = parse_one(item, err);
    if (!s) return std::nullopt;
    out.push_back(std::move(*s));
  }
  return out;
}

request_slo per_request_thresholds(const std::vector<slo>& slos) {
  request_slo r;
  auto tighten = [](std::uint64_t& slot, double ms) {
    auto ns = static_cast<std::uint64_t>(ms * 1e6);
    if (slot == 0 || ns < slot) slot = ns;
  };
  for (auto& s : slos) {
    if (!s.per_request()) continue;
    if (s.metric == slo_metric::ttft) tighten(r.ttft_ns, s.threshold);
    if (s.metric == slo_metric::tpot) tighten(r.tpot_ns, s.threshold);
    if (s.metric == slo_metric::e2el) tighten(r.e2el_ns, s.threshold);
  }
  return r;
}

}  // namespace meridian::loadtest
