// The HTTP/2 families: connections, streams, and why the gateway ended connections (GOAWAY)
// or reset streams, each reason under the family it can end.
#include "metrics/exposition.hpp"

namespace meridian::metrics {

std::string_view to_string(h2_reason r) {
  static constexpr std::string_view names[] = {
      "drain",           "idle",          "header_timeout",     "write_stall",
      "bad_preface",     "protocol_error", "compression_error", "flow_control",
      "rapid_reset",     "continuation_flood", "control_flood", "header_list_too_large",
      "refused",         "stalled",       "broken",             "other"};
  static_assert(std::size(names) == static_cast<std::size_t>(h2_reason::count_));
  return names[static_cast<std::size_t>(r)];
}

namespace detail {

void collect_http2(const workers_t& workers, std::vector<MetricFamily>& out) {
  std::uint64_t conns = 0, streams = 0, client_resets = 0;
  constexpr auto n_reasons = static_cast<std::size_t>(h2_reason::count_);
  std::array<std::uint64_t, n_reasons> goaway{}, reset{};
  for (const auto& w : workers) {
    conns += w->h2_connections().value();
    streams += w->h2_streams().value();
    client_resets += w->h2_client_resets().value();
    for (std::size_t r = 0; r < n_reasons; ++r) {
      goaway[r] += w->h2_goaway(static_cast<h2_reason>(r)).value();
      reset[r] += w->h2_reset(static_cast<h2_reason>(r)).value();
    }
  }
  add_value(out.emplace_back(family("meridian_http2_connections_total",
                                    "Client connections served as HTTP/2 (h2 by ALPN, h2c)",
                                    MetricType::Counter)),
            {}, static_cast<double>(conns));
  add_value(out.emplace_back(family("meridian_http2_streams_total",
                                    "HTTP/2 request streams opened by clients", MetricType::Counter)),
            {}, static_cast<double>(streams));
  auto ga = family("meridian_http2_goaway_total",
                   "HTTP/2 connections the gateway ended with GOAWAY, by reason",
                   MetricType::Counter);
  auto rs = family("meridian_http2_stream_resets_total",
                   "HTTP/2 streams reset, by whom (client, gateway) and the gateway's reason",
                   MetricType::Counter);
  add_value(rs, {{"by", "client"}, {"reason", "client"}}, static_cast<double>(client_resets));
  for (std::size_t r = 0; r < n_reasons; ++r) {
    auto why = static_cast<h2_reason>(r);
    auto name = std::string(to_string(why));
    // Each reason under the family it can end: a connection, a stream, or both.
    bool stream_end = why == h2_reason::protocol_error || why == h2_reason::flow_control ||
                      why == h2_reason::refused || why == h2_reason::stalled ||
                      why == h2_reason::broken || why == h2_reason::other;
    bool connection_end = why != h2_reason::refused && why != h2_reason::stalled &&
                          why != h2_reason::broken;
    if (connection_end) add_value(ga, {{"reason", name}}, static_cast<double>(goaway[r]));
    if (stream_end)
      add_value(rs, {{"by", "gateway"}, {"reason", name}}, static_cast<double>(reset[r]));
  }
  for (auto* f : {&ga, &rs}) out.push_back(std::move(*f));
}

}  // namespace detail
}  // namespace meridian::metrics
