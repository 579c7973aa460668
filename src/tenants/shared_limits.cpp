#include "meridian/tenants/shared_limits.hpp"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>

#include "meridian/common/log.hpp"

namespace meridian::tenants {

using common::log;
using common::log_level;

namespace {

// One limit's round: records what this replica asked (units per second) with Redis's own time,
// forgets replicas not heard from within ARGV[3] ms, returns what every live replica asked and
// how many there are. Atomic: Redis runs a script alone.
constexpr const char* sync_script = R"(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. now)
redis.call('PEXPIRE', KEYS[1], ttl * 4)
local all = redis.call('HGETALL', KEYS[1])
local total, n = 0, 0
for i = 1, #all, 2 do
  local d, at = string.match(all[i + 1], '^(%S+) (%d+)$')
  if d == nil or now - tonumber(at) > ttl then
    redis.call('HDEL', KEYS[1], all[i])
  else
    total = total + tonumber(d)
    n = n + 1
  end
end
return {tostring(total), n}
)";

timeval to_timeval(common::duration d) {
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
  return {static_cast<time_t>(us / 1'000'000), static_cast<suseconds_t>(us % 1'000'000)};
}

}  // namespace

double share_of(double mine, double total, unsigned replicas) {
  const double n = std::max(1u, replicas);
  // The floor, in the units of demand: 5% of an even split of what all asked (or 1 when
  // nothing was asked anywhere, which splits evenly).
  const double floor = std::max(total / n * 0.05, 1e-9);
  return (std::max(0.0, mine) + floor) / (std::max(0.0, total) + n * floor);
}

struct shared_limits::connection {
  redisContext* c = nullptr;
  ~connection() { reset(); }
  void reset() {
    if (c) redisFree(c);
    c = nullptr;
  }
};

shared_limits::shared_limits(const config::tenants_config::redis_store& store) : cfg_(store) {
  std::random_device rd;
  std::mt19937_64 rng((static_cast<std::uint64_t>(rd()) << 32) ^ rd());
  char id[20];
  std::snprintf(id, sizeof id, "%016llx", static_cast<unsigned long long>(rng()));
  id_ = id;
  thread_ = std::thread([this] { run(); });
}

shared_limits::~shared_limits() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void shared_limits::set_table(std::shared_ptr<const table> t) {
  std::lock_guard lk(mu_);
  table_ = std::move(t);
}

void shared_limits::run() {
  connection conn;
  const double interval_s = std::chrono::duration<double>(cfg_.sync_interval).count();
  // Connects and each round trip are bounded by the interval (at most 500 ms): a slow Redis
  // delays only this thread, and only until the next round.
  const auto bound = std::min<common::duration>(cfg_.sync_interval, std::chrono::milliseconds(500));
  bool said_down = false;
  std::unique_lock lk(mu_);
  while (!stop_) {
    auto t = table_;
    lk.unlock();
    bool ok = false;
    if (t) {
      if (!conn.c) {
        conn.c = redisConnectWithTimeout(cfg_.address.host.c_str(), cfg_.address.port,
                                         to_timeval(bound));
        if (conn.c && !conn.c->err) redisSetTimeout(conn.c, to_timeval(bound));
      }
      std::string why = !conn.c ? "cannot allocate a connection" : conn.c->err ? conn.c->errstr : "";
      if (why.empty()) {
        ok = sync(conn, *t, interval_s);
        if (!ok) why = conn.c->err ? conn.c->errstr : "an unexpected reply";
      }
      if (!ok) {
        conn.reset();
        fall_back(*t);
        if (!said_down)
          log(log_level::warn, "tenants", "the shared limits' Redis at ", cfg_.address.to_string(),
              " is unreachable (", why, "): each limit falls back to 1/", replicas_.load(),
              " of itself here until it returns");
        said_down = true;
      } else if (said_down || !up_.load()) {
        log(log_level::info, "tenants", "shared limits synced through Redis at ",
            cfg_.address.to_string(), " (", replicas_.load(), " replicas)");
        said_down = false;
      }
      up_.store(ok, std::memory_order_relaxed);
    }
    lk.lock();
    cv_.wait_for(lk, cfg_.sync_interval, [this] { return stop_; });
  }
}

bool shared_limits::sync(connection& conn, const table& t, double interval_s) {
  struct item {
    tenant_state* st;
    std::size_t limit;
    double rate;
  };
  std::vector<item> items;
  const auto now = common::steady().now();
  // Demand smoothed over about two seconds: shares follow the load, not each round's noise.
  const double keep = std::exp(-interval_s / 2.0);
  const std::string ttl_ms = std::to_string(std::max<long long>(
      1000, static_cast<long long>(interval_s * 10'000)));
  for (const auto& x : t.all()) {
    auto& st = *x.state;
    for (std::size_t i = 0; i < st.limits.size(); ++i) {
      const double asked = st.asked[i].exchange(0, std::memory_order_relaxed);
      st.demand_rate[i] = keep * st.demand_rate[i] + (1 - keep) * asked / interval_s;
      const std::string key = common::cat(cfg_.prefix, "tenant:", x.spec.name, ':', st.limits[i].name);
      const std::string rate = std::to_string(st.demand_rate[i]);
      redisAppendCommand(conn.c, "EVAL %s 1 %s %s %s %s", sync_script, key.c_str(), id_.c_str(),
                         rate.c_str(), ttl_ms.c_str());
      items.push_back({&st, i, st.demand_rate[i]});
    }
  }
  bool ok = true;
  unsigned seen = replicas_.load(std::memory_order_relaxed);
  for (const auto& it : items) {
    void* raw = nullptr;
    if (redisGetReply(conn.c, &raw) != REDIS_OK || !raw) return false;
    auto* r = static_cast<redisReply*>(raw);
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_STRING && r->element[1]->type == REDIS_REPLY_INTEGER) {
      const double total = std::strtod(r->element[0]->str, nullptr);
      const auto n = static_cast<unsigned>(std::max<long long>(1, r->element[1]->integer));
      seen = n;
      const double share = share_of(it.rate, total, n);
      it.st->share[it.limit].store(share, std::memory_order_relaxed);
      it.st->limiters[it.limit]->set_limit(it.st->limits[it.limit].amount * share, now);
    } else {
      if (r->type == REDIS_REPLY_ERROR)
        log(log_level::warn, "tenants", "the shared limits' script failed: ", r->str);
      ok = false;
    }
    freeReplyObject(r);
  }
  replicas_.store(seen, std::memory_order_relaxed);
  return ok;
}

void shared_limits::fall_back(const table& t) {
  const double share = 1.0 / std::max(1u, replicas_.load(std::memory_order_relaxed));
  for (const auto& x : t.all()) {
    auto& st = *x.state;
    for (std::size_t i = 0; i < st.limits.size(); ++i) {
      st.asked[i].exchange(0, std::memory_order_relaxed);
      st.share[i].store(share, std::memory_order_relaxed);
      st.limiters[i]->set_limit(st.limits[i].amount * share, common::steady().now());
    }
  }
}

std::string shared_limits::metrics_text() const {
  std::string out =
      "# HELP meridian_tenant_store_up Whether the last sync of the shared tenant limits reached "
      "Redis (0: each limit falls back to 1 / the replicas last seen)\n"
      "# TYPE meridian_tenant_store_up gauge\n";
  out += common::cat("meridian_tenant_store_up ", store_up(), '\n');
  out +=
      "# HELP meridian_tenant_replicas Gateway replicas sharing the tenant limits, as last seen\n"
      "# TYPE meridian_tenant_replicas gauge\n";
  out += common::cat("meridian_tenant_replicas ", replicas(), '\n');
  std::shared_ptr<const table> t;
  {
    std::lock_guard lk(mu_);
    t = table_;
  }
  if (!t) return out;
  out +=
      "# HELP meridian_tenant_share This replica's share of a tenant's limit\n"
      "# TYPE meridian_tenant_share gauge\n";
  for (const auto& x : t->all())
    for (std::size_t i = 0; i < x.state->limits.size(); ++i)
      out += common::cat("meridian_tenant_share{tenant=\"", x.spec.name, "\",limit=\"",
                         x.state->limits[i].name, "\"} ",
                         x.state->share[i].load(std::memory_order_relaxed), '\n');
  return out;
}

}  // namespace meridian::tenants
