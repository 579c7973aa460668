#include "meridian/admin/admin.hpp"

#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

using namespace meridian;

namespace {
struct fixture {
  // `two`: a second cluster, "mistral", with one endpoint.
  static std::shared_ptr<const config::gateway_config> make_cfg(bool two) {
    std::string y = R"(
listeners: [ { address: 127.0.0.1:0 } ]
clusters:
  - { name: llama, endpoints: [ {address: 127.0.0.1:9201, zone: edge}, 127.0.0.1:9202 ] }
)";
    if (two) y += "  - { name: mistral, endpoints: [ 127.0.0.1:9203 ] }\n";
    y += "routes: [ { match: { path_prefix: / }, cluster: llama } ]\n";
    return config::load_string(y, "t");
  }
  static metrics::layout make_layout(bool two) {
    metrics::layout l{
        {"r"}, {"llama"}, {"llama"}, {{"127.0.0.1:9201", "127.0.0.1:9202"}}, {"public"}, {}};
    if (two) {
      l.clusters.push_back("mistral");
      l.endpoints.push_back({"127.0.0.1:9203"});
    }
    return l;
  }
  explicit fixture(bool two = false) : fixture(two, 0) {}
  bool two_;
  std::shared_ptr<const config::gateway_config> cfg;
  upstream::identity_table ids;
  metrics::registry reg;
  std::shared_ptr<const upstream::topology> topo = upstream::resolve_topology(*cfg, ids, reg);
  upstream::worker_upstreams w1{topo, 0}, w2{topo, 1};
  std::atomic<bool> draining{false};
  admin::context ctx;
  fixture(bool two, int) : two_(two), cfg(make_cfg(two)), reg(make_layout(two), 2) {
    ctx.cfg = cfg.get();
    ctx.metrics = &reg;
    ctx.workers = {&w1, &w2};
    ctx.draining = &draining;
    ctx.io_backend = "epoll";
    // What the probes published: the endpoints /admin/endpoints lists.
    ctx.signals = [this] {
      auto s = std::make_shared<upstream::signals>();
      s->topo = topo;
      for (const auto& c : topo->clusters) s->clusters.emplace_back(c.endpoints.size());
      return std::shared_ptr<const upstream::signals>(std::move(s));
    };
  }
};
}  // namespace

TEST_CASE("livez, readyz and drain") {
  fixture f;
  CHECK(admin::handle(f.ctx, "GET", "/livez").status == 200);
  CHECK(admin::handle(f.ctx, "GET", "/readyz").status == 200);
  f.draining = true;
  auto r = admin::handle(f.ctx, "GET", "/readyz");
  CHECK(r.status == 503);
  CHECK(r.body.find("\"code\":\"draining\"") != std::string::npos);
}

TEST_CASE("readyz fails when no cluster can serve; one dead cluster among others is no outage") {
  fixture f(true);
  for (auto* w : {&f.w1, &f.w2})
    for (auto& ep : w->cluster(0).endpoints) ep->stats.healthy_shared = false;
  CHECK(admin::handle(f.ctx, "GET", "/readyz").status == 200);  // mistral still serves
  auto name = f.cfg->clusters[0].name;
  auto r = admin::handle(f.ctx, "GET", "/readyz?cluster=" + name);
  CHECK(r.status == 503);
  CHECK(r.body.find("has no healthy endpoint") != std::string::npos);
  f.w2.cluster(0).endpoints[1]->stats.healthy_shared = true;
  CHECK(admin::handle(f.ctx, "GET", "/readyz?cluster=" + name).status == 200);
  CHECK(admin::handle(f.ctx, "GET", "/readyz?cluster=nope").status == 404);
  // Every engine down (frozen, say): nothing this replica could serve, so it is not ready.
  for (auto* w : {&f.w1, &f.w2})
    for (std::size_t c = 0; c < 2; ++c)
      for (auto& ep : w->cluster(c).endpoints) ep->stats.healthy_shared = false;
  r = admin::handle(f.ctx, "GET", "/readyz");
  CHECK(r.status == 503);
  CHECK(r.body.find("no cluster has a healthy endpoint") != std::string::npos);
}

TEST_CASE("admin endpoints sums workers and metrics has the io backend") {
  fixture f;
  f.w1.cluster(0).endpoints[0]->stats.in_flight_shared = 2;
  f.w2.cluster(0).endpoints[0]->stats.in_flight_shared = 3;
  auto r = admin::handle(f.ctx, "GET", "/admin/endpoints");
  CHECK(r.status == 200);
  CHECK(r.body.find("\"in_flight\":5") != std::string::npos);
  CHECK(r.body.find("\"zone\":\"edge\"") != std::string::npos);
  f.reg.set_io_backend("epoll");
  r = admin::handle(f.ctx, "GET", "/metrics");
  CHECK(r.body.find("meridian_io_backend_info{backend=\"epoll\"} 1") != std::string::npos);
  r = admin::handle(f.ctx, "GET", "/nope");
  CHECK(r.status == 404);
  CHECK(r.body.find("\"error\"") != std::string::npos);
  // A wrong method is 405 with the methods the page takes.
  r = admin::handle(f.ctx, "GET", "/admin/drain");
  CHECK(r.status == 405);
  CHECK(r.allow == "POST");
  CHECK(r.body.find("\"code\":\"method_not_allowed\"") != std::string::npos);
  r = admin::handle(f.ctx, "DELETE", "/metrics");
  CHECK(r.status == 405);
  CHECK(r.allow == "GET, HEAD");
}

TEST_CASE("mutating admin requests need the bearer token, or a loopback listener without one") {
  char path[] = "/tmp/meridian-token-XXXXXX";
  int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  std::string token = "s3cret-token-0123456789\n";
  REQUIRE(::write(fd, token.data(), token.size()) == static_cast<ssize_t>(token.size()));
  ::close(fd);
  const std::string base = R"(listeners: [ { address: 127.0.0.1:0 } ]
clusters: [ { name: llama, endpoints: [ 127.0.0.1:9201 ] } ]
routes: [ { match: { path_prefix: / }, cluster: llama } ]
)";
  fixture f;
  int drains = 0, reloads = 0;
  f.ctx.on_drain = [&] { ++drains; };
  f.ctx.on_reload = [&] {
    ++reloads;
    return std::string();
  };
  // With a token: the right one only, whatever the listener's address.
  auto with_token = config::load_string(
      base + "admin: { address: 0.0.0.0:9901, token_file: " + path + " }\n", "t");
  f.ctx.cfg = with_token.get();
  CHECK(admin::handle(f.ctx, "POST", "/admin/drain").status == 401);
  CHECK(admin::handle(f.ctx, "POST", "/admin/drain", "Bearer s3cret-token-012345678").status ==
        401);
  CHECK(admin::handle(f.ctx, "POST", "/admin/reload", "Basic s3cret-token-0123456789").status ==
        401);
  CHECK(drains + reloads == 0);
  CHECK(admin::handle(f.ctx, "POST", "/admin/drain", "Bearer s3cret-token-0123456789").status ==
        202);
  CHECK(admin::handle(f.ctx, "POST", "/admin/reload", "Bearer s3cret-token-0123456789").status ==
        200);
  CHECK(drains == 1);
  CHECK(reloads == 1);
  // A mistaken drain is undone (409 once the gateway is stopping).
  bool stopping = false;
  f.ctx.on_undrain = [&] { return !stopping; };
  CHECK(admin::handle(f.ctx, "POST", "/admin/undrain").status == 401);
  auto u = admin::handle(f.ctx, "POST", "/admin/undrain", "Bearer s3cret-token-0123456789");
  CHECK(u.status == 200);
  CHECK(u.body == "{\"draining\":false}\n");
  stopping = true;
  CHECK(admin::handle(f.ctx, "POST", "/admin/undrain", "Bearer s3cret-token-0123456789").status ==
        409);
  int quits = 0;
  f.ctx.on_quit = [&] { ++quits; };
  CHECK(admin::handle(f.ctx, "POST", "/admin/quit").status == 401);
  auto q = admin::handle(f.ctx, "POST", "/admin/quit", "Bearer s3cret-token-0123456789");
  CHECK(q.status == 202);
  CHECK(q.body == "{\"draining\":true,\"stopping\":true}\n");
  CHECK(quits == 1);
  CHECK(drains == 1);
  // The effective config shows routes and header matches: with a token set, it needs it. It
  // names the token's file, not the token.
  CHECK(admin::handle(f.ctx, "GET", "/admin/config").status == 401);
  CHECK(admin::handle(f.ctx, "GET", "/admin/config", "Bearer wrong").status == 401);
  auto shown = admin::handle(f.ctx, "GET", "/admin/config", "Bearer s3cret-token-0123456789");
  CHECK(shown.status == 200);
  CHECK(shown.content_type == "application/yaml");
  CHECK(shown.body.find(std::string("token_file: ") + path) != std::string::npos);
  CHECK(shown.body.find("s3cret") == std::string::npos);
  CHECK(shown.body.find("name: llama") != std::string::npos);
  CHECK(admin::handle(f.ctx, "POST", "/admin/config").status == 405);
  // Reading pages needs nothing.
  CHECK(admin::handle(f.ctx, "GET", "/admin/endpoints").status == 200);
  // Without a token: refused on a listener others can reach, allowed on loopback.
  auto open = config::load_string(base + "admin: { address: 0.0.0.0:9901 }\n", "t");
  f.ctx.cfg = open.get();
  auto r = admin::handle(f.ctx, "POST", "/admin/drain");
  CHECK(r.status == 403);
  CHECK(r.body.find("admin.token_file is not set") != std::string::npos);
  auto local = config::load_string(base, "t");
  f.ctx.cfg = local.get();
  CHECK(admin::handle(f.ctx, "POST", "/admin/drain").status == 202);
  CHECK(drains == 2);
  // A token file that is missing or too short is a config error.
  CHECK_THROWS_AS(config::load_string(base + "admin: { token_file: /nonexistent/token }\n", "t"),
                  config::config_error);
  std::string short_path = std::string(path) + ".short";
  { std::ofstream(short_path) << "abc\n"; }
  CHECK_THROWS_WITH_AS(
      config::load_string(base + "admin: { token_file: " + short_path + " }\n", "t"),
      doctest::Contains("no token of 16 characters or more"), config::config_error);
  ::unlink(path);
  ::unlink(short_path.c_str());
}
