#include "proxy/dispatch.hpp"

namespace meridian::proxy {

namespace {
metrics::decision decision_of(routing::pick_reason r) {
  switch (r) {
    case routing::pick_reason::round_robin:
      return metrics::decision::round_robin;
    case routing::pick_reason::least_request:
      return metrics::decision::least_request;
    case routing::pick_reason::panic:
      return metrics::decision::panic;
    default:
      return metrics::decision::score;
  }
}
}  // namespace

try_spec dispatch(request& r, const routing::candidates& picks, const routing::pick_input& in,
                  std::size_t i, bool hedge) {
  auto& ctx = r.ctx;
  auto& cs = r.w.ups.cluster(ctx.cluster);
  auto why = hedge   ? metrics::decision::hedge
             : i > 0 ? metrics::decision::retry
                     : decision_of(picks.reason);
  const auto& ep = cs.endpoints[picks[i]];
  ep->metrics->decisions[static_cast<int>(why)].inc();
  r.w.balancers[ctx.cluster]->dispatched(picks[i], in);
  ++ctx.attempts;
  ctx.endpoint = ep;
  auto t = r.try_on(ep, r.head_out);
  t.route = &r.w.metrics.route(*ctx.route);
  t.uncached = picks.uncached[i];
  t.prompt_blocks = static_cast<std::int32_t>(picks.prompt_blocks);
  t.transfer = in.bytes;
  t.expected_queue = picks.queue[i];
  t.expected_outstanding = picks.outstanding[i];
  return t;
}

}  // namespace meridian::proxy
