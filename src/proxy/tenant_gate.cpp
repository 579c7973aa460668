#include "proxy/tenant_gate.hpp"

#include <charconv>

#include "meridian/common/log.hpp"
#include "proxy/grpc.hpp"
#include "proxy/model_routing.hpp"

namespace meridian::proxy {

namespace asio = boost::asio;
using common::error_kind;

namespace {

// The key a request presents: the tenants header ("Bearer <key>" where it is authorization),
// else x-api-key. Empty: none.
std::string_view presented_key(const http::request_head& h, const config::tenants_config& tc) {
  std::string_view v = h.find(tc.header);
  if (!v.empty() && tc.header == "authorization") {
    constexpr std::string_view bearer = "bearer ";
    if (v.size() > bearer.size() &&
        std::equal(bearer.begin(), bearer.end(), v.begin(),
                   [](char a, char b) { return a == (b | 0x20); }))
      v.remove_prefix(bearer.size());
    else
      v = {};
  }
  if (v.empty()) v = h.find("x-api-key");
  while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
  while (!v.empty() && v.back() == ' ') v.remove_suffix(1);
  return v;
}

// max_tokens (or max_completion_tokens) where the peeked body says it, else 0. An estimate: the
// charge is settled against the answer's usage.
std::uint64_t max_tokens_in(std::string_view body) {
  for (std::string_view key : {"\"max_completion_tokens\"", "\"max_tokens\""}) {
    for (auto at = body.find(key); at != std::string_view::npos; at = body.find(key, at + 1)) {
      if (at > 0 && body[at - 1] == '\\') continue;  // inside a string
      auto i = at + key.size();
      while (i < body.size() && (body[i] == ' ' || body[i] == ':' || body[i] == '\n')) ++i;
      std::uint64_t n = 0;
      auto r = std::from_chars(body.data() + i, body.data() + body.size(), n);
      if (r.ec == std::errc{} && r.ptr != body.data() + i) return n;
    }
  }
  return 0;
}

// The gateway's own answer; a gRPC call's status is logged as the backend's would be.
asio::awaitable<void> refuse(request& r, error_kind kind, std::string_view why) {
  if (is_grpc(r.ex)) r.ctx.grpc_status = std::to_string(common::grpc_status_of(kind));
  co_await r.ex.reply_error(kind, why);
}

void set_rate_fields(request& r, const tenants::refusal* refused) {
  r.tenant_text = tenants::rate_headers(*r.ctx.tenant, r.w.clock->now(), refused);
  r.tenant_fields.clear();
  for (const auto& [n, v] : r.tenant_text) r.tenant_fields.push_back({n, v});
  r.ex.add_response_fields(r.tenant_fields);
}

}  // namespace

asio::awaitable<bool> identify_tenant(request& r) {
  const auto* table = r.ctx.snap->tenants.get();
  if (!table) co_return true;
  const auto& tc = r.cfg().tenants;
  const auto key = presented_key(r.ex.head(), tc);
  // No key on a mutual-TLS listener: the verified certificate may name the tenant.
  if (key.empty()) {
    r.ctx.tenant = table->find_subject(r.ex.client_subject());
    if (r.ctx.tenant) co_return true;
  }
  if (key.empty() && !tc.require) {
    r.ctx.tenant = table->find("anonymous");
    co_return true;
  }
  r.ctx.tenant = table->find_key(key);
  if (r.ctx.tenant) co_return true;
  r.w.metrics.rejected(metrics::reject_reason::unauthenticated).inc();
  // Never the key itself, in the answer or the log.
  std::string why = key.empty()
                        ? std::string("You didn't provide an API key. Send it as "
                                      "\"Authorization: Bearer <key>\" or \"x-api-key: <key>\".")
                        : std::string("Incorrect API key provided.");
  co_await refuse(r, error_kind::invalid_api_key, why);
  co_return false;
}

asio::awaitable<bool> admit_tenant(request& r, bool grpc) {
  auto& ctx = r.ctx;
  if (!ctx.tenant) co_return true;
  const auto& t = *ctx.tenant;
  const auto& tc = r.cfg().tenants;
  const auto& head = r.ex.head();
  // The model, read from the body now where nothing read it yet and the tenant is held to some.
  if (!grpc && !t.spec.models.empty() && !ctx.model_routed && head.body != http::body_kind::none) {
    bool read = co_await read_model(r);
    if (!read) co_return false;
  }
  std::string_view model = grpc ? std::string_view(ctx.model)
                           : r.guard.routed ? std::string_view(*r.guard.routed)
                                            : std::string_view{};
  const std::size_t prompt_bytes = head.body == http::body_kind::content_length
                                       ? static_cast<std::size_t>(head.content_length)
                                       : r.ex.buffered_body().size();
  if (!model.empty() && !tenants::may_use(t, model)) {
    r.w.metrics.rejected(metrics::reject_reason::forbidden).inc();
    std::string why = tc.hide_models
                          ? common::cat("The model `", model, "` does not exist.")
                          : common::cat("Your key may not use the model `", model, "`.");
    co_await refuse(r, tc.hide_models ? error_kind::model_not_found : error_kind::model_not_allowed,
                    why);
    co_return false;
  }
  std::uint64_t completion = max_tokens_in(r.ex.buffered_body());
  if (completion == 0) completion = tc.default_max_tokens;
  ctx.charged = {static_cast<double>(prompt_bytes / 4), static_cast<double>(completion)};
  const auto now = r.w.clock->now();
  auto refused = tenants::admit(t, ctx.charged, now);
  if (!refused) {
    ctx.tenant_held = true;
    set_rate_fields(r, nullptr);
    co_return true;
  }
  set_rate_fields(r, &*refused);
  r.w.metrics.rejected(metrics::reject_reason::rate_limited).inc();
  std::string why =
      refused->never
          ? common::cat("Request too large for ", t.spec.name, "'s limit ", refused->limit,
                        ": it needs more than the limit allows at once (", ctx.charged.prompt,
                        " prompt + ", ctx.charged.completion, " completion tokens estimated).")
          : common::cat("Rate limit reached for ", t.spec.name, " on ", refused->limit,
                        ". Please try again in ", tenants::reset_text(refused->retry_after), '.');
  co_await refuse(r, error_kind::rate_limit_exceeded, why);
  co_return false;
}

void settle_tenant(request_context& ctx, int status, common::time_point now) {
  if (!ctx.tenant) return;
  auto& st = *ctx.tenant->state;
  if (status > 0 && status < 600)
    st.by_status[static_cast<std::size_t>(status)].fetch_add(1, std::memory_order_relaxed);
  if (!ctx.tenant_held) return;  // answered before it took a place (403, 404, 429, ...)
  ctx.tenant_held = false;
  // What it used: the answer's usage; for a stream without one (or cut short), its events, a
  // token each, and the prompt as estimated; the estimate where a backend answered and said
  // nothing (gRPC, a body without usage); nothing where no backend answered.
  tenants::usage used;
  if (ctx.prompt_tokens >= 0 || ctx.completion_tokens >= 0 || ctx.stream_events >= 0) {
    used.prompt = ctx.prompt_tokens >= 0 ? static_cast<double>(ctx.prompt_tokens) : ctx.charged.prompt;
    used.completion = ctx.completion_tokens >= 0 ? static_cast<double>(ctx.completion_tokens)
                      : ctx.stream_events >= 0   ? static_cast<double>(ctx.stream_events)
                                                 : 0;
  } else if (ctx.endpoint && status >= 200 && status < 300) {
    used = ctx.charged;
  }
  tenants::finish(*ctx.tenant, ctx.charged, used, now);
}

}  // namespace meridian::proxy
