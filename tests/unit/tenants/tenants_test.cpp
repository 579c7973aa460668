#include "meridian/tenants/shared_limits.hpp"
#include "meridian/tenants/tenants.hpp"

#include <doctest/doctest.h>

#include <boost/json.hpp>

#include "meridian/common/log.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>

using namespace meridian;
using namespace std::chrono_literals;
using tenants::usage;

namespace {

std::string keys_yaml(std::string_view extra_limits = "") {
  return common::cat(R"(tenants:
  - name: team-a
    keys: [ ")", tenants::digest_text(tenants::hash_key("sk-team-a")), R"(" ]
    models: [ "llama-3*", fake-model ]
    priority: critical
    limits: { requests_per_minute: 60, tokens_per_minute: 6000, concurrent: 2)", extra_limits,
                     R"( }
  - name: team-b
    keys: [ ")", tenants::digest_text(tenants::hash_key("sk-team-b")), R"(" ]
)");
}

tenants::table make_table(std::string_view extra = "", const tenants::table* previous = nullptr) {
  return tenants::table(config::parse_keys(keys_yaml(extra), "keys.yaml"), previous);
}

std::string parse_error(const std::string& yaml) {
  try {
    config::parse_keys(yaml, "keys.yaml");
  } catch (const config::config_error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("keys are kept as SHA-256 hashes and compared whole") {
  // FIPS 180-2's test vector.
  CHECK(tenants::digest_text(tenants::hash_key("abc")) ==
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  auto a = tenants::hash_key("sk-1"), b = tenants::hash_key("sk-1"), c = tenants::hash_key("sk-2");
  CHECK(tenants::same_digest(a, b));
  CHECK_FALSE(tenants::same_digest(a, c));
  auto t = make_table();
  REQUIRE(t.find_key("sk-team-a"));
  CHECK(t.find_key("sk-team-a")->spec.name == "team-a");
  CHECK(t.find_key("sk-team-b")->spec.name == "team-b");
  CHECK(t.find_key("sk-team-") == nullptr);
  CHECK(t.find_key("") == nullptr);
  // Who calls without a key (require: false) has a tenant of its own, with no limits.
  CHECK(t.find("anonymous") == nullptr);
  tenants::table open(config::parse_keys(keys_yaml(), "keys.yaml"), nullptr, true);
  REQUIRE(open.find("anonymous"));
  CHECK(open.find("anonymous")->spec.limits.empty());
}

TEST_CASE("model patterns: * is any run of characters, the rest literal") {
  CHECK(tenants::model_matches("llama-3*", "llama-3"));
  CHECK(tenants::model_matches("llama-3*", "llama-3.1-8b"));
  CHECK_FALSE(tenants::model_matches("llama-3*", "llama-2-7b"));
  CHECK(tenants::model_matches("*-instruct", "mistral-7b-instruct"));
  CHECK(tenants::model_matches("a*b*c", "aXXbYYc"));
  CHECK_FALSE(tenants::model_matches("a*b*c", "aXXbYY"));
  CHECK(tenants::model_matches("*", ""));
  CHECK_FALSE(tenants::model_matches("fake-model", "fake-model-2"));
  auto t = make_table();
  CHECK(tenants::may_use(*t.find("team-a"), "fake-model"));
  CHECK_FALSE(tenants::may_use(*t.find("team-a"), "gpt-4"));
  CHECK(tenants::may_use(*t.find("team-b"), "gpt-4"));  // no patterns: every model
}

TEST_CASE("a limit refills continuously and holds one window's allowance") {
  common::manual_clock clk;
  tenants::limiter l(60, 1min);  // one per second
  auto now = clk.now();
  for (int i = 0; i < 60; ++i) REQUIRE(l.take(1, now).allowed);
  auto v = l.take(1, now);
  CHECK_FALSE(v.allowed);
  CHECK(v.retry_after == 1s);
  CHECK(l.remaining(now) == doctest::Approx(0));
  CHECK(l.until_full(now) == 60s);
  clk.advance(2500ms);
  CHECK(l.remaining(clk.now()) == doctest::Approx(2.5));
  CHECK(l.take(2, clk.now()).allowed);
  CHECK_FALSE(l.take(1, clk.now()).allowed);
  // A refund never fills past full; a late charge puts the bucket in debt.
  clk.advance(10min);
  l.adjust(-30, clk.now());
  CHECK(l.remaining(clk.now()) == doctest::Approx(60));
  l.adjust(90, clk.now());
  CHECK(l.remaining(clk.now()) == doctest::Approx(0));
  CHECK(l.take(1, clk.now()).retry_after == 31s);
}

TEST_CASE("admission charges every limit or none, and settles tokens against usage") {
  common::manual_clock clk;
  auto t = make_table();
  const auto& a = *t.find("team-a");
  auto& st = *a.state;
  // Tokens first: 5,000 estimated leave 1,000 of 6,000.
  REQUIRE_FALSE(tenants::admit(a, usage{1000, 4000}, clk.now()));
  CHECK(st.in_flight == 1);
  auto refused = tenants::admit(a, usage{800, 400}, clk.now());
  REQUIRE(refused);
  CHECK(refused->limit == "tokens_per_minute");
  CHECK_FALSE(refused->never);
  CHECK(refused->retry_after == 2s);  // 200 tokens short at 100 per second
  CHECK(st.in_flight == 1);           // the place it took is given back
  // The refused request took nothing from the request limit either.
  CHECK(st.limiters[0]->remaining(clk.now()) == doctest::Approx(59));
  // It used 1,200 of the 5,000 charged: 3,800 come back.
  tenants::finish(a, usage{1000, 4000}, usage{1000, 200}, clk.now());
  CHECK(st.in_flight == 0);
  CHECK(st.limiters[1]->remaining(clk.now()) == doctest::Approx(4800));
  CHECK(st.prompt_tokens == 1000);
  CHECK(st.completion_tokens == 200);
  // A request that alone needs more than the limit never fits.
  auto never = tenants::admit(a, usage{7000, 0}, clk.now());
  REQUIRE(never);
  CHECK(never->never);
  CHECK(st.limited[1] == 2);
}

TEST_CASE("concurrent caps requests at once") {
  common::manual_clock clk;
  auto t = make_table();
  const auto& a = *t.find("team-a");
  REQUIRE_FALSE(tenants::admit(a, usage{1, 1}, clk.now()));
  REQUIRE_FALSE(tenants::admit(a, usage{1, 1}, clk.now()));
  auto third = tenants::admit(a, usage{1, 1}, clk.now());
  REQUIRE(third);
  CHECK(third->limit == "concurrent");
  CHECK(a.state->limited.back() == 1);
  tenants::finish(a, usage{1, 1}, usage{1, 1}, clk.now());
  CHECK_FALSE(tenants::admit(a, usage{1, 1}, clk.now()));
}

TEST_CASE("OpenAI's rate-limit headers, and Retry-After on a refusal") {
  common::manual_clock clk;
  auto t = make_table();
  const auto& a = *t.find("team-a");
  REQUIRE_FALSE(tenants::admit(a, usage{100, 500}, clk.now()));
  auto h = tenants::rate_headers(a, clk.now());
  auto get = [&](std::string_view name) {
    for (auto& [n, v] : h)
      if (n == name) return v;
    return std::string("(absent)");
  };
  CHECK(get("x-ratelimit-limit-requests") == "60");
  CHECK(get("x-ratelimit-remaining-requests") == "59");
  CHECK(get("x-ratelimit-reset-requests") == "1s");
  CHECK(get("x-ratelimit-limit-tokens") == "6000");
  CHECK(get("x-ratelimit-remaining-tokens") == "5400");
  CHECK(get("x-ratelimit-reset-tokens") == "6s");
  CHECK(get("retry-after") == "(absent)");
  tenants::refusal r;
  r.retry_after = 1500ms;
  h = tenants::rate_headers(a, clk.now(), &r);
  CHECK(get("retry-after") == "2");
  CHECK(tenants::reset_text(20ms) == "20ms");
  CHECK(tenants::reset_text(360s) == "6m0s");
  CHECK(tenants::reset_text(1500ms) == "1.5s");
}

TEST_CASE("a reload keeps a tenant's usage while its limits stay the same") {
  common::manual_clock clk;
  auto first = make_table();
  REQUIRE_FALSE(tenants::admit(*first.find("team-a"), usage{0, 3000}, clk.now()));
  tenants::finish(*first.find("team-a"), usage{0, 3000}, usage{0, 3000}, clk.now());
  auto same = make_table("", &first);
  CHECK(same.find("team-a")->state == first.find("team-a")->state);
  auto changed = make_table(", tokens_per_day: 100000", &first);
  CHECK(changed.find("team-a")->state != first.find("team-a")->state);
  CHECK(changed.find("team-b")->state == first.find("team-b")->state);
}

TEST_CASE("the keys file is checked, and never echoes a key") {
  CHECK(parse_error("tenants:\n  - name: x\n    keys: [ sk-live-123 ]\n").find(
            "not a key hash") != std::string::npos);
  CHECK(parse_error("tenants:\n  - name: x\n    keys: [ sk-live-123 ]\n").find("sk-live-123") ==
        std::string::npos);
  const auto h = tenants::digest_text(tenants::hash_key("k"));
  CHECK(parse_error(common::cat("tenants:\n  - { name: x, keys: [ \"", h, "\" ] }\n  - { name: y, keys: [ \"",
                                h, "\" ] }\n"))
            .find("listed twice") != std::string::npos);
  CHECK(parse_error(common::cat("tenants:\n  - { name: x, keys: [ \"", h,
                                "\" ], limits: { tokens_per_hour: 5 } }\n"))
            .find("unknown limit") != std::string::npos);
  CHECK(parse_error(common::cat("tenants:\n  - { name: anonymous, keys: [ \"", h, "\" ] }\n"))
            .find("it has none") != std::string::npos);
  CHECK(parse_error(common::cat("tenants:\n  - { name: \"a b\", keys: [ \"", h, "\" ] }\n"))
            .find("metrics label") != std::string::npos);
  CHECK(parse_error(common::cat("tenants:\n  - { name: x, keys: [ \"", h, "\" ], priority: vip }\n"))
            .find("unknown priority") != std::string::npos);
  CHECK(parse_error("tenants:\n  - { name: anonymous, limits: { requests_per_minute: 10 } }\n")
            .empty());
}

TEST_CASE("/metrics and /admin/tenants show usage and limits, never a key or its hash") {
  common::manual_clock clk;
  auto t = make_table();
  const auto& a = *t.find("team-a");
  REQUIRE_FALSE(tenants::admit(a, usage{10, 20}, clk.now()));
  tenants::finish(a, usage{10, 20}, usage{10, 5}, clk.now());
  a.state->by_status[200]++;
  a.state->by_status[429]++;
  auto text = tenants::metrics_text(t);
  CHECK(text.find("meridian_tenant_requests_total{tenant=\"team-a\",code=\"200\"} 1\n") !=
        std::string::npos);
  CHECK(text.find("meridian_tenant_tokens_total{tenant=\"team-a\",kind=\"completion\"} 5\n") !=
        std::string::npos);
  CHECK(text.find("meridian_tenant_rate_limited_total{tenant=\"team-a\",limit=\"concurrent\"} 0\n") !=
        std::string::npos);
  auto js = tenants::admin_json(t, clk.now());
  for (const auto* s : {&text, &js}) {
    CHECK(s->find("sk-team-a") == std::string::npos);
    CHECK(s->find(tenants::digest_text(tenants::hash_key("sk-team-a")).substr(7, 16)) ==
          std::string::npos);
  }
  auto v = boost::json::parse(js);
  const auto& first = v.at("tenants").at(0);
  CHECK(first.at("name") == "team-a");
  CHECK(first.at("keys") == 1);
  CHECK(first.at("requests") == 2);
  CHECK(first.at("rate_limited") == 1);
  CHECK(first.at("limits").at(1).at("remaining").as_double() == doctest::Approx(5985));
}

TEST_CASE("shared limits: shares follow demand, keep a floor, and sum to one") {
  using tenants::share_of;
  CHECK(share_of(0, 0, 1) == doctest::Approx(1));
  CHECK(share_of(0, 0, 3) == doctest::Approx(1.0 / 3));  // nothing asked anywhere: even
  // 70/20/10 of the demand: shares close to it, summing to one.
  const double total = 70 + 20 + 10;
  const double a = share_of(70, total, 3), b = share_of(20, total, 3), c = share_of(10, total, 3);
  CHECK(a + b + c == doctest::Approx(1));
  CHECK(a == doctest::Approx(0.70).epsilon(0.02));
  CHECK(c == doctest::Approx(0.10).epsilon(0.1));
  // An idle replica keeps a floor: its first request is not refused outright.
  CHECK(share_of(0, total, 3) > 0.01);
}

TEST_CASE("a limit's share changes its rate; what was used stays used") {
  common::manual_clock clk;
  tenants::limiter l(60, 1min);
  for (int i = 0; i < 30; ++i) REQUIRE(l.take(1, clk.now()).allowed);  // 30 used
  l.set_limit(20, clk.now());  // this replica's share fell to a third: 10 in debt
  CHECK(l.limit() == doctest::Approx(20));
  CHECK(l.remaining(clk.now()) == doctest::Approx(0));
  CHECK(l.until_full(clk.now()) == 90s);  // 30 units at 20 a minute
  CHECK_FALSE(l.take(1, clk.now()).allowed);
  clk.advance(33s);  // 11 repaid: 19 used of 20
  CHECK(l.remaining(clk.now()) == doctest::Approx(1));
  l.set_limit(120, clk.now());  // a larger share forgives nothing: 19 used of 120
  CHECK(l.remaining(clk.now()) == doctest::Approx(101));
  // A request larger than this replica's whole bucket is taken when the bucket is full (its
  // share is smaller than one request), leaving the bucket in debt; not otherwise.
  tenants::limiter small(5, 1min);
  CHECK(small.take(8, clk.now()).allowed);
  CHECK_FALSE(small.take(1, clk.now()).allowed);
  CHECK(small.until_full(clk.now()) == 96s);
}

TEST_CASE("the tenants section: the keys file checked at load, redis read, a redis change needs a restart") {
  const std::string keys = "/tmp/meridian-tenants-test-" + std::to_string(::getpid()) + ".yaml";
  {
    std::ofstream f(keys);
    f << keys_yaml();
  }
  const std::string base = R"(
listeners: [ { name: p, address: 127.0.0.1:1 } ]
clusters: [ { name: c, endpoints: [ 127.0.0.1:2 ] } ]
routes: [ { match: { path_prefix: / }, cluster: c } ]
)";
  auto cfg = config::load_string(base + "tenants: { keys_file: " + keys + " }\n", "t.yaml");
  CHECK(cfg->tenants.enabled);
  CHECK(cfg->tenants.require);
  CHECK(cfg->tenants.header == "authorization");
  CHECK_FALSE(cfg->tenants.redis);
  auto shared = config::load_string(
      base + "tenants: { keys_file: " + keys +
          ", header: X-Key, redis: { address: 127.0.0.1:6390, prefix: \"m:\", sync_interval: 50ms } }\n",
      "t.yaml");
  REQUIRE(shared->tenants.redis);
  CHECK(shared->tenants.header == "x-key");
  CHECK(shared->tenants.redis->address.port == 6390);
  CHECK(shared->tenants.redis->prefix == "m:");
  CHECK(shared->tenants.redis->sync_interval == 50ms);
  CHECK(config::restart_needed(*cfg, *shared) == "tenants.redis changed");
  auto fails = [&](const std::string& t) {
    try {
      config::load_string(base + t, "t.yaml");
    } catch (const config::config_error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  CHECK(fails("tenants: { require: false }\n").find("the keys file is required") != std::string::npos);
  CHECK(fails("tenants: { keys_file: /nonexistent.yaml }\n").find("cannot read the keys file") !=
        std::string::npos);
  CHECK(fails("tenants: { keys_file: " + keys + ", redis: { prefix: x } }\n")
            .find("tenants.redis.address") != std::string::npos);
  CHECK(fails("tenants: { keys_file: " + keys + ", limits: 3 }\n").find("unknown key") !=
        std::string::npos);
  std::remove(keys.c_str());
}

TEST_CASE("a client certificate's subject can name a tenant; subjects are checked") {
  const auto yaml = common::cat(
      "tenants:\n  - { name: svc, subjects: [ \"CN=svc-a,O=Example\" ] }\n  - { name: both, keys: [ \"",
      tenants::digest_text(tenants::hash_key("k")), "\" ], subjects: [ \"CN=svc-b\" ] }\n");
  tenants::table t(config::parse_keys(yaml, "keys.yaml"), nullptr);
  REQUIRE(t.find_subject("CN=svc-a,O=Example"));
  CHECK(t.find_subject("CN=svc-a,O=Example")->spec.name == "svc");
  CHECK(t.find_subject("CN=svc-b")->spec.name == "both");
  CHECK(t.find_subject("CN=svc-a") == nullptr);  // exactly, not a prefix
  CHECK(t.find_subject("") == nullptr);
  CHECK(t.find_key("k")->spec.name == "both");
  CHECK(parse_error("tenants:\n  - { name: a, subjects: [ \"CN=x\" ] }\n  - { name: b, subjects: [ \"CN=x\" ] }\n")
            .find("listed twice") != std::string::npos);
  CHECK(parse_error("tenants:\n  - { name: a }\n").find("or client certificate subjects") !=
        std::string::npos);
}
