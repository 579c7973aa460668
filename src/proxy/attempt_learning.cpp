// What an attempt's response teaches: the endpoint's time to first token, per-token time and
// response time, the route's TTFT and inter-token histograms, the token counts. Part of attempt
// (proxy/attempt.hpp); the I/O is in attempt.cpp.
#include "proxy/attempt.hpp"

#include "meridian/routing/cost.hpp"

namespace meridian::proxy {

// ---- what the response teaches ----------------------------------------------------------------

void attempt::head_arrived() {
  auto now = w_.clock->now();
  head_at_ = now;
  w_.ups.record_status(*ep_, resp_.status, now);
  bool sse = resp_.find("content-type").starts_with("text/event-stream");
  // Only successful answers say how fast the endpoint is: a quick 503 is not speed.
  observe_ = resp_.status >= 200 && resp_.status < 300 &&
             cfg_->clusters[ep_->info->cluster].kind == config::cluster_kind::inference;
  // Every event stream is framed, whatever the cluster: one that breaks ends with an error
  // event, which must not land inside a half-relayed event.
  obs_.reset(sse);
  if (!timed_stream()) {
    answered_ = true;
    w_.ups.answered(*ep_, picked_at_, prefill_);
  }
}

void attempt::observe(std::string_view payload) {
  auto now = w_.clock->now();
  auto r = obs_.feed(payload, now);
  if (!observe_) return;
  if (r.first) {
    answered_ = true;
    w_.ups.answered(*ep_, picked_at_, prefill_);
    double s = common::seconds_between(picked_at_, now);
    // An engine that reports its prefix-cache hits tells at the end what this prompt cost in
    // prefill; the index only knows what this gateway sent where.
    if (uncached_ >= 0 && ep_->stats.reports_cached)
      deferred_ttft_ = s;
    else
      w_.ups.observe_ttft(*ep_, s, now, queued_, uncached_);
    if (rm_) rm_->ttft.observe(common::seconds_between(request_start_, now));
    ep_->metrics->first_token.observe(common::seconds_between(sent_at_, now));
  }
  if (r.first && r.events > 1) steady_tokens_ += r.events - 1;  // arrived with the first
  if (r.gap) {
    double g = std::chrono::duration<double>(*r.gap).count();
    if (rm_) rm_->itl.observe(g);
    // A gap far beyond the stream's usual step is another request's prefill stalling the batch
    // (or a hiccup; a gap over twice the mean so far): charged to that request where it is known,
    // not to the per-token time that the batch size explains.
    bool stall = steady_tokens_ >= 3 && g / r.events > 2 * steady_seconds_ / steady_tokens_;
    if (!stall) {
      steady_seconds_ += g;
      steady_tokens_ += r.events;
    }
  }
}

void attempt::mark_complete() {
  complete_ = true;
  if (resp_.status < 500) w_.ups.record_complete(*ep_);
}

void attempt::mark_cut() {
  w_.ups.record_cut(*ep_, w_.clock->now());
}

// The request is over on this endpoint: its in-flight count, and what it measured.
void attempt::report_done() {
  auto now = w_.clock->now();
  if (!answered_) w_.ups.answered(*ep_, picked_at_, prefill_);
  // A try that lost a hedge race with no first byte was at least this slow: only a lower bound,
  // but without it an endpoint whose tries keep losing would never look slow.
  if (abandoned_ && !answered_) {
    double s = common::seconds_between(picked_at_, now);
    if (ep_->stats.ttft.known())
      w_.ups.observe_ttft(*ep_, s, now, queued_);
    else
      w_.ups.observe_response(*ep_, s, now, queued_);
  }
  bool measured = complete_ && resp_.status >= 200 && resp_.status < 300;
  const double uncached = uncached_blocks();
  if (measured && timed_stream()) {
    auto n = obs_.events();
    if (n >= 2 && steady_tokens_ > 0) {
      // The batch it ran in: the mean of what the endpoint held at its start and at its end.
      const auto& c = cfg_->clusters[ep_->info->cluster];
      double at_end =
          routing::expected_cost(ep_->stats, routing::cost_params::from(c), now).outstanding;
      w_.ups.observe_tpot(*ep_, steady_seconds_ / static_cast<double>(steady_tokens_), now, n,
                          (batch_at_pick_ + std::max(1.0, at_end)) / 2);
    }
  } else if (measured) {
    w_.ups.observe_response(*ep_, common::seconds_between(picked_at_, now), now, queued_, uncached);
  }
  if (deferred_ttft_ >= 0) w_.ups.observe_ttft(*ep_, deferred_ttft_, now, queued_, uncached);
  deferred_ttft_ = -1;
  if (rm_ && observe_) {
    if (auto p = obs_.prompt_tokens()) rm_->prompt_tokens.inc(*p);
    if (auto c = obs_.completion_tokens()) rm_->completion_tokens.inc(*c);
  }
  learn_transfer(now);
  w_.ups.request_finished(*ep_, picked_at_, now, measured);
}

// Storage: the transfer leaves its endpoint's bytes in flight, and a complete one large enough to
// time teaches the endpoint's rates: its own, and the transfers it shared the endpoint with (the
// mean of the gateway's transfers there at its start and end, itself included).
void attempt::learn_transfer(common::time_point now) {
  auto& st = ep_->stats;
  st.transfer_bytes = std::max(0.0, st.transfer_bytes - counted_transfer_);
  counted_transfer_ = 0;
  const auto& cluster = cfg_->clusters[ep_->info->cluster];
  if (cluster.kind != config::cluster_kind::storage) return;
  constexpr std::uint64_t min_bytes = 256 * 1024;
  double secs = common::seconds_between(head_at_, now);
  if (!complete_ || resp_.status < 200 || resp_.status >= 300 || relayed_ < min_bytes ||
      secs < 0.002)
    return;
  double sharing = std::max(1.0, (in_flight_at_pick_ + gateway_in_flight(st)) / 2.0);
  w_.ups.observe_transfer(*ep_, static_cast<double>(relayed_) / secs, sharing, now);
}

// The prompt blocks the endpoint had to prefill: from the usage's cached_tokens when the
// engine reports them (from then on its TTFT samples wait for the usage) (vLLM with
// --enable-prompt-tokens-details, SGLang), as a share of the prompt, else what the index did not
// know it to hold. Several gateway replicas each know only what they sent; the engine knows what it
// held.
double attempt::uncached_blocks() {
  auto prompt = obs_.prompt_tokens();
  auto cached = obs_.cached_tokens();
  if (uncached_ < 0 || !prompt || !cached || *prompt == 0) return uncached_;
  ep_->stats.reports_cached = true;
  double cold = static_cast<double>(*prompt - std::min(*cached, *prompt)) / *prompt;
  return cold * prompt_blocks_;
}

}  // namespace meridian::proxy
