// Tenants: who a request comes from (an API key, kept only as its SHA-256), which models it may
// use, and the limits it is held to (requests and tokens per minute or day, continuous refill;
// requests at once). The keys file (parsed by config::load_keys_file) becomes an immutable table
// that workers share through their snapshot; each tenant's counters and limit state are atomics shared by every worker and
// kept across reloads while the tenant's limits stay the same. No key in clear is ever held.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "meridian/common/clock.hpp"
#include "meridian/config/config.hpp"
#include "meridian/tenants/limiter.hpp"

namespace meridian::tenants {

using digest = config::key_digest;

// SHA-256 of a key, and the keys file's form of it: "sha256:<64 lowercase hex>".
digest hash_key(std::string_view key);
std::string digest_text(const digest& d);
std::optional<digest> parse_digest(std::string_view text);
// Equal in constant time (CRYPTO_memcmp).
bool same_digest(const digest& a, const digest& b);

// A model pattern: `*` stands for any run of characters (none included); the rest is literal.
bool model_matches(std::string_view pattern, std::string_view model);

using tenant_spec = config::tenant_config;
using limit_spec = config::tenant_limit;
using config::limit_counts;

// A request's use, estimated before it goes upstream or counted after.
struct usage {
  double prompt = 0, completion = 0;
  double total() const { return prompt + completion; }
};

// One tenant's live state, shared by every worker: its limits' buckets, requests in flight and
// the counters /metrics and /admin/tenants read.
struct tenant_state {
  explicit tenant_state(const tenant_spec& spec);
  std::vector<std::unique_ptr<limiter>> limiters;  // one per spec.limits, same order
  std::vector<limit_spec> limits;                  // what they were built from
  std::atomic<unsigned> in_flight{0};
  std::array<std::atomic<std::uint64_t>, 600> by_status{};  // requests by the status they got
  std::atomic<std::uint64_t> prompt_tokens{0}, completion_tokens{0};
  std::vector<std::atomic<std::uint64_t>> limited;  // refused by limit i; the last: concurrent
  // Shared limits (tenants.redis): what requests asked of limit i here since the last sync (the
  // sync thread takes it), this replica's share of limit i (1 alone), and the sync thread's
  // smoothed demand per second (its own).
  std::vector<std::atomic<double>> asked;
  std::vector<std::atomic<double>> share;
  std::vector<double> demand_rate;
};

struct tenant {
  tenant_spec spec;
  std::shared_ptr<tenant_state> state;
};

// Why a request was refused, and when to try again.
struct refusal {
  std::string limit;  // "requests_per_minute", "concurrent", ...
  common::duration retry_after{};
  bool never = false;  // the request alone needs more than the limit holds
};

class table {
 public:
  // The tenants of a keys file; a tenant of `previous` with the same name and limits keeps its
  // state (usage, counters). `anonymous`: keys are optional, and who calls without one is the
  // tenant "anonymous" (the file's, else one without limits).
  table(std::vector<tenant_spec> specs, const table* previous, bool anonymous = false);
  // The tenant a presented key belongs to (hashed, then compared in constant time), or null.
  const tenant* find_key(std::string_view key) const;
  const tenant* find(std::string_view name) const;
  // The tenant a verified client certificate's subject names (RFC 2253, exactly), or null.
  const tenant* find_subject(std::string_view subject) const;
  const std::vector<tenant>& all() const { return tenants_; }

 private:
  std::vector<tenant> tenants_;
  std::unordered_multimap<std::uint64_t, std::pair<digest, std::size_t>> keys_;
  std::unordered_map<std::string, std::size_t> subjects_;
};

// Whether `t` may use `model` (its patterns; none: every model).
bool may_use(const tenant& t, std::string_view model);

// Takes a place (concurrent) and charges `estimate` to every limit. Refused: nothing stays
// charged, the refusal says which limit and for how long; counted in the tenant's `limited`.
std::optional<refusal> admit(const tenant& t, const usage& estimate, common::time_point now);
// The request ended: gives the place back and settles the tokens charged against those used.
void finish(const tenant& t, const usage& charged, const usage& used, common::time_point now);

// OpenAI's rate-limit headers for the tenant's per-minute request and token limits
// (x-ratelimit-limit-requests, -remaining-requests, -reset-requests, and the -tokens set), and
// Retry-After (whole seconds, at least 1) when `refused` says so.
std::vector<std::pair<std::string, std::string>> rate_headers(const tenant& t,
                                                              common::time_point now,
                                                              const refusal* refused = nullptr);
// "6m0s", "1.5s", "20ms": how OpenAI writes a reset time.
std::string reset_text(common::duration d);

// The tenant families in Prometheus text: meridian_tenant_requests_total{tenant,code},
// meridian_tenant_tokens_total{tenant,kind}, meridian_tenant_rate_limited_total{tenant,limit},
// meridian_tenant_in_flight{tenant}.
std::string metrics_text(const table& t);
// GET /admin/tenants: per tenant its limits (amount, window, remaining, reset), requests in
// flight, usage counters, models and priority; never a key or its hash.
std::string admin_json(const table& t, common::time_point now);

}  // namespace meridian::tenants
