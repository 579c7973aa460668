#include "meridian/tenants/tenants.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "meridian/common/log.hpp"

namespace meridian::tenants {

digest hash_key(std::string_view key) {
  digest d{};
  unsigned int len = 0;
  if (EVP_Digest(key.data(), key.size(), d.data(), &len, EVP_sha256(), nullptr) != 1 ||
      len != d.size())
    throw std::runtime_error("SHA-256 failed");
  return d;
}

std::string digest_text(const digest& d) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out = "sha256:";
  for (unsigned char c : d) {
    out.push_back(hex[c >> 4]);
    out.push_back(hex[c & 15]);
  }
  return out;
}

bool same_digest(const digest& a, const digest& b) {
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

bool model_matches(std::string_view pattern, std::string_view model) {
  // Iterative glob with backtracking to the last '*': linear in practice, no recursion.
  std::size_t p = 0, m = 0, star = std::string_view::npos, mark = 0;
  while (m < model.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = m;
    } else if (p < pattern.size() && pattern[p] == model[m]) {
      ++p;
      ++m;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      m = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

tenant_state::tenant_state(const tenant_spec& spec)
    : limits(spec.limits),
      limited(spec.limits.size() + 1),
      asked(spec.limits.size()),
      share(spec.limits.size()),
      demand_rate(spec.limits.size(), 0.0) {
  for (const auto& l : spec.limits) limiters.push_back(std::make_unique<limiter>(l.amount, l.window));
  for (auto& s : share) s.store(1.0, std::memory_order_relaxed);
}

namespace {

std::uint64_t bucket_of(const digest& d) {
  std::uint64_t v = 0;
  std::memcpy(&v, d.data(), sizeof v);
  return v;
}

double cost_of(const limit_spec& l, const usage& u) {
  switch (l.what) {
    case limit_counts::requests:
      return 1;
    case limit_counts::tokens:
      return u.total();
    case limit_counts::prompt_tokens:
      return u.prompt;
    case limit_counts::completion_tokens:
      return u.completion;
  }
  return 0;
}

}  // namespace

table::table(std::vector<tenant_spec> specs, const table* previous, bool anonymous) {
  for (auto& s : specs) anonymous = anonymous && s.name != "anonymous";
  if (anonymous) {  // who calls without a key where keys are not required: no limits
    tenant_spec a;
    a.name = "anonymous";
    specs.push_back(std::move(a));
  }
  for (auto& s : specs) {
    std::shared_ptr<tenant_state> state;
    if (previous)
      if (const auto* old = previous->find(s.name); old && old->state->limits == s.limits)
        state = old->state;
    if (!state) state = std::make_shared<tenant_state>(s);
    tenants_.push_back({std::move(s), std::move(state)});
  }
  for (std::size_t i = 0; i < tenants_.size(); ++i) {
    for (const auto& k : tenants_[i].spec.keys) keys_.emplace(bucket_of(k), std::pair{k, i});
    for (const auto& s : tenants_[i].spec.subjects) subjects_.emplace(s, i);
  }
}

const tenant* table::find_subject(std::string_view subject) const {
  if (subject.empty()) return nullptr;
  auto it = subjects_.find(std::string(subject));
  return it == subjects_.end() ? nullptr : &tenants_[it->second];
}

const tenant* table::find_key(std::string_view key) const {
  if (key.empty()) return nullptr;
  const digest d = hash_key(key);
  auto [b, e] = keys_.equal_range(bucket_of(d));
  const tenant* found = nullptr;
  for (auto it = b; it != e; ++it)
    if (same_digest(it->second.first, d)) found = &tenants_[it->second.second];
  return found;
}

const tenant* table::find(std::string_view name) const {
  for (const auto& t : tenants_)
    if (t.spec.name == name) return &t;
  return nullptr;
}

bool may_use(const tenant& t, std::string_view model) {
  if (t.spec.models.empty()) return true;
  return std::any_of(t.spec.models.begin(), t.spec.models.end(),
                     [&](const std::string& p) { return model_matches(p, model); });
}

std::optional<refusal> admit(const tenant& t, const usage& estimate, common::time_point now) {
  auto& st = *t.state;
  const auto cap = t.spec.concurrent;
  if (cap > 0) {
    unsigned n = st.in_flight.load(std::memory_order_relaxed);
    do {
      if (n >= cap) {
        st.limited.back().fetch_add(1, std::memory_order_relaxed);
        refusal r;
        r.limit = "concurrent";
        r.retry_after = std::chrono::seconds(1);
        return r;
      }
    } while (!st.in_flight.compare_exchange_weak(n, n + 1, std::memory_order_relaxed));
  } else {
    st.in_flight.fetch_add(1, std::memory_order_relaxed);
  }
  for (std::size_t i = 0; i < st.limiters.size(); ++i) {
    const double cost = cost_of(st.limits[i], estimate);
    if (cost <= st.limits[i].amount) {
      st.asked[i].fetch_add(cost, std::memory_order_relaxed);
      continue;
    }
    // More than the whole limit allows at once: it never fits.
    st.in_flight.fetch_sub(1, std::memory_order_relaxed);
    st.limited[i].fetch_add(1, std::memory_order_relaxed);
    refusal r;
    r.limit = st.limits[i].name;
    r.never = true;
    return r;
  }
  for (std::size_t i = 0; i < st.limiters.size(); ++i) {
    const double cost = cost_of(st.limits[i], estimate);
    auto v = st.limiters[i]->take(cost, now);
    if (v.allowed) continue;
    for (std::size_t k = 0; k < i; ++k)
      st.limiters[k]->adjust(-cost_of(st.limits[k], estimate), now);
    st.in_flight.fetch_sub(1, std::memory_order_relaxed);
    st.limited[i].fetch_add(1, std::memory_order_relaxed);
    refusal r;
    r.limit = st.limits[i].name;
    r.retry_after = v.retry_after;
    return r;
  }
  return std::nullopt;
}

void finish(const tenant& t, const usage& charged, const usage& used, common::time_point now) {
  auto& st = *t.state;
  st.in_flight.fetch_sub(1, std::memory_order_relaxed);
  st.prompt_tokens.fetch_add(static_cast<std::uint64_t>(used.prompt), std::memory_order_relaxed);
  st.completion_tokens.fetch_add(static_cast<std::uint64_t>(used.completion),
                                 std::memory_order_relaxed);
  for (std::size_t i = 0; i < st.limiters.size(); ++i) {
    if (st.limits[i].what == limit_counts::requests) continue;
    const double delta = cost_of(st.limits[i], used) - cost_of(st.limits[i], charged);
    if (delta != 0) st.limiters[i]->adjust(delta, now);
  }
}

std::string reset_text(common::duration d) {
  using namespace std::chrono;
  const double s = duration<double>(d).count();
  if (s < 1) return common::cat(static_cast<long long>(std::ceil(s * 1000)), "ms");
  if (s < 60) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3g", std::ceil(s * 10) / 10);
    return common::cat(buf, 's');
  }
  const auto total = static_cast<long long>(std::ceil(s));
  if (total < 3600) return common::cat(total / 60, 'm', total % 60, 's');
  return common::cat(total / 3600, 'h', total % 3600 / 60, 'm', total % 60, 's');
}

std::vector<std::pair<std::string, std::string>> rate_headers(const tenant& t,
                                                              common::time_point now,
                                                              const refusal* refused) {
  std::vector<std::pair<std::string, std::string>> out;
  const auto& st = *t.state;
  bool requests = false, tokens = false;
  for (std::size_t i = 0; i < st.limiters.size(); ++i) {
    const auto& l = st.limits[i];
    if (l.window != std::chrono::minutes(1)) continue;
    const bool is_requests = l.what == limit_counts::requests;
    if (is_requests ? requests : tokens) continue;  // the first of each kind speaks for it
    (is_requests ? requests : tokens) = true;
    const char* kind = is_requests ? "requests" : "tokens";
    const auto& lim = *st.limiters[i];
    out.emplace_back(common::cat("x-ratelimit-limit-", kind),
                     common::cat(static_cast<long long>(l.amount)));
    // What is left of the whole limit, as this replica's part of it tells (its share).
    const double share = std::max(1e-6, st.share[i].load(std::memory_order_relaxed));
    out.emplace_back(common::cat("x-ratelimit-remaining-", kind),
                     common::cat(static_cast<long long>(
                         std::floor(std::min(l.amount, lim.remaining(now) / share)))));
    out.emplace_back(common::cat("x-ratelimit-reset-", kind), reset_text(lim.until_full(now)));
  }
  if (refused) {
    const double s = std::chrono::duration<double>(refused->retry_after).count();
    out.emplace_back("retry-after", common::cat(std::max<long long>(1, static_cast<long long>(std::ceil(s)))));
  }
  return out;
}

}  // namespace meridian::tenants
