#include "load/results.hpp"

#include <algorithm>
#include <map>
#include <string>

namespace meridian::loadtest {

const char* error_kind_name(error_kind e) {
  switch (e) {
    case error_kind::none:
      return "none";
    case error_kind::http_status:
      return "http_status";
    case error_kind::connect:
      return "connect";
    case error_kind::transport:
      return "transport";
    case error_kind::timeout:
      return "timeout";
    case error_kind::unsent:
      return "unsent";
    case error_kind::bad_response:
      return "bad_response";
    case error_kind::grpc_status:
      return "grpc_status";
  }
  return "?";
}

namespace runner {

void record(worker* w, connection*, steady::time_point intended, steady::time_point sent_at,
            const outcome& o, int prompt_tokens) {
  if (intended < w->warm_end) {
    ++w->warm_skipped;
    return;
  }
  const bool ok = o.error == error_kind::none;
  const std::uint64_t e2e = to_ns(o.done - intended);
  const std::uint64_t lag = to_ns(sent_at - intended);
  const bool streamed =
      w->cfg.stream && w->cfg.api != openai_api::none && w->cfg.api != openai_api::embeddings;
  auto ti = static_cast<std::size_t>(std::chrono::duration<double>(intended - w->start).count() /
                                     w->interval_s);
  auto ci = static_cast<std::size_t>(std::chrono::duration<double>(o.done - w->start).count() /
                                     w->interval_s);
  if (ti >= w->timeline.size()) ti = w->timeline.size() - 1;
  if (ci >= w->timeline.size()) ci = w->timeline.size() - 1;
  w->last_done = std::max(w->last_done, o.done);
  if (o.error != error_kind::unsent) w->lag.record(lag);
  if (lag > static_cast<std::uint64_t>(w->cfg.late_threshold_ms * 1e6)) ++w->late;
  std::uint64_t ttft_ns = 0, tpot_ns = 0;
  if (ok) {
    ++w->completed;
    ++w->timeline[ci].completed;
    w->e2el.record(e2e);
    w->progress_hist.record(e2e);
    auto& tl = w->timeline[ti];
    if (!tl.e2el) tl.e2el = std::make_unique<histogram>();
    tl.e2el->record(e2e);
    w->in_tokens += static_cast<std::uint64_t>(prompt_tokens);
    w->out_tokens += o.tokens;
    w->timeline[ci].output_tokens += o.tokens;
    if (w->cfg.api != openai_api::none) {
      ttft_ns =
          streamed && o.first_token != steady::time_point{} ? to_ns(o.first_token - intended) : e2e;
      w->ttft.record(ttft_ns);
      if (streamed) {
        if (!tl.ttft) tl.ttft = std::make_unique<histogram>();
        tl.ttft->record(ttft_ns);
      }
      if (o.tokens > 1 && streamed) {
        tpot_ns = (e2e - std::min(e2e, ttft_ns)) / (o.tokens - 1);
        w->tpot.record(tpot_ns);
        if (!tl.tpot) tl.tpot = std::make_unique<histogram>();
        tl.tpot->record(tpot_ns);
      }
      if (streamed &&
          std::max<double>(static_cast<double>(tpot_ns), w->cfg.expected_itl_ms * 1e6) > 1e6)
        w->clumped += o.clumped;
    }
    const auto& pr = w->per_request;
    const bool good = (!pr.e2el_ns || e2e <= pr.e2el_ns) &&
                      (!pr.ttft_ns || ttft_ns <= pr.ttft_ns) &&
                      (!pr.tpot_ns || tpot_ns <= pr.tpot_ns);
    if (good) ++w->good;
  } else {
    ++w->failed;
    ++w->timeline[ci].failed;
    ++w->err[static_cast<int>(o.error)];
  }
  if (o.status) ++w->statuses[o.status];
  if (o.backend >= 0) ++w->backends[static_cast<std::size_t>(o.backend)].second;
  if (!w->cfg.csv_path.empty() && w->records.size() < 20'000'000)
    w->records.push_back({std::chrono::duration<double>(intended - w->start).count(),
                          static_cast<float>(lag / 1e6), static_cast<float>(ttft_ns / 1e6),
                          static_cast<float>(e2e / 1e6), static_cast<std::uint16_t>(o.status),
                          static_cast<std::uint16_t>(o.backend < 0 ? 0xffff : o.backend), o.tokens,
                          static_cast<std::uint8_t>(o.error)});
  w->a_completed.store(w->completed, std::memory_order_relaxed);
  w->a_failed.store(w->failed, std::memory_order_relaxed);
}

namespace {

void add_counts(run_summary& s, const worker& w) {
  s.completed += w.completed;
  s.failed += w.failed;
  s.sent += w.sent;
  s.late += w.late;
  s.unsent += w.unsent;
  s.good += w.good;
  s.warmup_skipped += w.warm_skipped;
  s.input_tokens += w.in_tokens;
  s.output_tokens += w.out_tokens;
  s.token_events += w.token_events;
  s.clumped_events += w.clumped;
  for (int k = 1; k < 8; ++k)
    if (w.err[k]) s.errors[error_kind_name(static_cast<error_kind>(k))] += w.err[k];
  for (auto& [st, c] : w.statuses) s.status_counts[st] += c;
  s.ttft.merge(w.ttft);
  s.tpot.merge(w.tpot);
  s.itl.merge(w.itl);
  s.e2el.merge(w.e2el);
  s.send_lag.merge(w.lag);
  s.handshake.merge(w.handshake);
  s.handshakes += w.handshakes;
  s.resumed += w.resumed;
  s.handshake_failures += w.handshake_failures;
  if (s.handshake_error.empty()) s.handshake_error = w.handshake_error;
}

// Adds w's per-backend counts under run-wide ids; returns w's backend index -> run-wide id.
std::vector<int> add_backends(run_summary& s, const worker& w,
                              std::map<std::string, int>& backend_ids) {
  std::vector<int> remap;
  for (auto& [name, c] : w.backends) {
    auto [it, inserted] = backend_ids.emplace(name, static_cast<int>(s.per_backend.size()));
    if (inserted) {
      s.per_backend.emplace_back(name, 0);
      s.backend_names.push_back(name);
    }
    s.per_backend[static_cast<std::size_t>(it->second)].second += c;
    remap.push_back(it->second);
  }
  return remap;
}

void add_timeline(run_summary& s, const worker& w) {
  for (std::size_t i = 0; i < s.timeline.size(); ++i) {
    auto& d = s.timeline[i];
    auto& x = w.timeline[i];
    d.start_s = x.start_s;
    d.completed += x.completed;
    d.failed += x.failed;
    d.output_tokens += x.output_tokens;
    if (x.e2el) {
      if (!d.e2el) d.e2el = std::make_unique<histogram>();
      d.e2el->merge(*x.e2el);
    }
    if (x.ttft) {
      if (!d.ttft) d.ttft = std::make_unique<histogram>();
      d.ttft->merge(*x.ttft);
    }
    if (x.tpot) {
      if (!d.tpot) d.tpot = std::make_unique<histogram>();
      d.tpot->merge(*x.tpot);
    }
  }
}

void add_records(run_summary& s, const worker& w, const std::vector<int>& remap) {
  for (auto r : w.records) {
    if (r.backend != 0xffff) r.backend = static_cast<std::uint16_t>(remap[r.backend]);
    s.records.push_back(r);
  }
}

}  // namespace

run_summary summarize(const load_config& cfg, const std::vector<std::unique_ptr<worker>>& ws,
                      steady::time_point start) {
  run_summary s;
  s.label = cfg.label;
  s.configured_duration_s = cfg.duration_s;
  s.interval_s = ws.front()->interval_s;
  s.timeline.resize(ws.front()->timeline.size());
  steady::time_point last{};
  std::map<std::string, int> backend_ids;
  for (auto& w : ws) {
    add_counts(s, *w);
    const auto remap = add_backends(s, *w, backend_ids);
    add_timeline(s, *w);
    add_records(s, *w, remap);
    last = std::max(last, w->last_done);
  }
  std::sort(s.records.begin(), s.records.end(),
            [](auto& a, auto& b) { return a.intended_s < b.intended_s; });
  const auto measured_from =
      start + std::chrono::microseconds(static_cast<std::int64_t>(cfg.warmup_s * 1e6));
  s.duration_s = std::max(1e-9, std::chrono::duration<double>(last - measured_from).count());
  if (last == steady::time_point{}) s.duration_s = cfg.duration_s;
  // Trim empty tail intervals.
  while (s.timeline.size() > 1 && s.timeline.back().completed == 0 &&
         s.timeline.back().failed == 0 && !s.timeline.back().e2el)
    s.timeline.pop_back();
  evaluate_slos(cfg, s);
  return s;
}

}  // namespace runner

void evaluate_slos(const load_config& cfg, run_summary& s) {
  s.slo_results.clear();
  s.slo_pass = true;
  for (auto& slo : cfg.slos) {
    double v = 0;
    auto lat = [&](const histogram& h) {
      const double p = stat_percentile(slo.stat);
      return (p < 0 ? h.mean() : static_cast<double>(h.percentile(p))) / 1e6;
    };
    bool empty = false;
    switch (slo.metric) {
      case slo_metric::ttft:
        v = lat(s.ttft), empty = s.ttft.count() == 0;
        break;
      case slo_metric::tpot:
        v = lat(s.tpot), empty = s.tpot.count() == 0;
        break;
      case slo_metric::itl:
        v = lat(s.itl), empty = s.itl.count() == 0;
        break;
      case slo_metric::e2el:
        v = lat(s.e2el), empty = s.e2el.count() == 0;
        break;
      case slo_metric::error_rate:
        v = s.error_rate();
        break;
      case slo_metric::late_rate:
        v = s.sent ? static_cast<double>(s.late) / static_cast<double>(s.sent) : 0;
        break;
      case slo_metric::request_throughput:
        v = s.request_throughput();
        break;
      case slo_metric::goodput:
        v = s.goodput();
        break;
    }
    // A latency gate with no successful requests cannot be met.
    const bool pass = !empty && slo.holds(v);
    s.slo_results.push_back({slo.text, v, pass, slo.metric});
    if (!pass) s.slo_pass = false;
  }
}

}  // namespace meridian::loadtest
