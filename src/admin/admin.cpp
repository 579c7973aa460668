#include "meridian/admin/admin.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/intrusive/list.hpp>
#include <boost/json.hpp>
#include <cmath>
#include <optional>
#include <stdexcept>

#include "meridian/common/clock.hpp"
#include "meridian/common/error.hpp"
#include "meridian/common/log.hpp"
#include "meridian/common/random.hpp"
#include "meridian/http/accept.hpp"
#include "meridian/http/connection.hpp"
#include "meridian/tls/client.hpp"

namespace meridian::admin {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {
response json_error(common::error_kind kind, std::string_view message) {
  return {common::status_of(kind), "application/json", common::error_body(kind, message)};
}

// A worker's state of endpoint `id` of cluster c (null while that worker has not adopted the
// topology that added it, or has dropped it). The caller holds the worker's structure lock.
const upstream::endpoint_state* find_endpoint(const upstream::worker_upstreams& w, std::size_t c,
                                              upstream::endpoint_id id) {
  if (c >= w.size()) return nullptr;
  for (const auto& ep : w.cluster(c).endpoints)
    if (ep->info->id == id) return ep.get();
  return nullptr;
}

// A cluster is healthy if any worker still sends traffic to one of its endpoints.
bool cluster_healthy(const context& ctx, std::size_t c) {
  for (const auto* w : ctx.workers) {
    auto structure = w->lock_structure();
    if (c >= w->size()) continue;
    for (const auto& ep : w->cluster(c).endpoints)
      if (ep->stats.healthy_shared.load(std::memory_order_relaxed)) return true;
  }
  return false;
}

// Milliseconds for JSON, null when unknown (negative or NaN).
boost::json::value ms(double seconds) {
  if (!(seconds >= 0)) return nullptr;
  return std::round(seconds * 1e6) / 1e3;
}

boost::json::value age_ms(common::time_point at, common::time_point now) {
  if (at == common::time_point{}) return nullptr;
  return ms(common::seconds_between(at, now));
}

boost::json::value known(double v) {
  if (!(v >= 0)) return nullptr;
  return v;
}

// What the probes last published about one endpoint, with the age of each reading.
boost::json::object probe_json(const upstream::probe_signals& p, common::time_point now,
                               const std::array<std::string, 3>& errors) {
  namespace json = boost::json;
  json::object o;
  o["probed"] = p.probed;
  o["healthy"] = p.healthy;
  o["rtt_ms"] = ms(p.rtt);    // the path: windowed minimum of probe times
  o["wait_ms"] = ms(p.wait);  // the server's wait before answering a probe
  o["connect_ms"] = ms(p.connect);
  o["age_ms"] = age_ms(p.probed_at, now);
  o["error"] = errors[0].empty() ? json::value(nullptr) : json::value(errors[0]);
  json::object load;
  load["queue_depth"] = known(p.waiting);
  load["running"] = known(p.running);
  load["kv_cache_usage"] = known(p.kv_usage);
  load["age_ms"] = age_ms(p.scraped_at, now);
  load["last_scrape_failed"] = p.scrape_failed;
  load["error"] = errors[1].empty() ? json::value(nullptr) : json::value(errors[1]);
  o["load"] = std::move(load);
  if (p.models) {
    json::array m;
    for (const auto& id : *p.models) m.emplace_back(id);
    o["models"] = std::move(m);
  } else {
    o["models"] = nullptr;
  }
  o["models_error"] = errors[2].empty() ? json::value(nullptr) : json::value(errors[2]);
  return o;
}

// Each worker's own estimates and the cost it gives the endpoint (as of its last 100 ms tick).
boost::json::array workers_json(const context& ctx, std::size_t c, upstream::endpoint_id id) {
  namespace json = boost::json;
  json::array out;
  auto ld = [](const std::atomic<double>& a) { return a.load(std::memory_order_relaxed); };
  for (const auto* w : ctx.workers) {
    auto structure = w->lock_structure();
    const auto* ep = find_endpoint(*w, c, id);
    if (!ep) {
      out.push_back(nullptr);  // this worker has not taken the endpoint on yet
      continue;
    }
    const auto& st = ep->stats;
    json::object o;
    o["in_flight"] = st.in_flight_shared.load(std::memory_order_relaxed);
    o["healthy"] = st.healthy_shared.load(std::memory_order_relaxed);
    o["ttft_ewma_ms"] = ms(ld(st.ttft_shared));
    o["tpot_ewma_ms"] = ms(ld(st.tpot_shared));
    o["response_ewma_ms"] = ms(ld(st.response_shared));
    o["latency_ms"] = ms(ld(st.latency_shared));
    o["queue_ms"] = ms(ld(st.queue_shared));
    o["decode_ms"] = ms(ld(st.decode_shared));
    o["batch_ms"] = ms(ld(st.batch_shared));
    o["noise_ms"] = ms(ld(st.noise_shared));
    o["decode_slope_ms"] = ms(ld(st.decode_slope_shared));
    o["outstanding"] = ld(st.outstanding_shared);
    o["load"] = ld(st.load_shared);
    o["score_ms"] = ms(ld(st.score_shared));
    // Prefix affinity: the learned prefill time per uncached block (null until learned) and
    // the prompt blocks this worker's index credits the endpoint with.
    o["prefill_ms_per_block"] = ms(ld(st.prefill_shared));
    o["indexed_blocks"] = st.indexed_blocks_shared.load(std::memory_order_relaxed);
    // Storage: the delivery rate estimate (null until measured) and the bytes in flight.
    double rate = ld(st.throughput_shared);
    o["throughput_bytes_per_second"] = rate >= 0 ? json::value(rate) : json::value(nullptr);
    double flow = ld(st.flow_rate_shared);
    o["flow_rate_bytes_per_second"] = flow >= 0 ? json::value(flow) : json::value(nullptr);
    o["transfer_bytes_in_flight"] = ld(st.transfer_bytes_shared);
    out.push_back(std::move(o));
  }
  return out;
}

std::string endpoints_json(const context& ctx) {
  namespace json = boost::json;
  auto now = common::steady().now();
  auto sig = ctx.signals ? ctx.signals() : nullptr;
  json::object root;
  root["io_backend"] = ctx.io_backend;
  root["workers"] = ctx.workers.size();
  root["draining"] = ctx.draining && ctx.draining->load();
  root["zone"] = ctx.cfg->zone;
  json::array clusters;
  for (std::size_t c = 0; c < ctx.cfg->clusters.size(); ++c) {
    const auto& cc = ctx.cfg->clusters[c];
    json::object co;
    co["name"] = cc.name;
    co["kind"] = std::string(config::to_string(cc.kind));
    co["balancer"] = std::string(config::to_string(cc.balancer));
    json::array eps;
    const auto* ci =
        sig && sig->topo && c < sig->topo->clusters.size() ? &sig->topo->clusters[c] : nullptr;
    for (std::size_t e = 0; ci && e < ci->endpoints.size(); ++e) {
      const auto& info = ci->endpoints[e];
      std::uint64_t in_flight = 0, requests = 0, failures = 0;
      double score = -1;
      bool healthy = false;
      for (const auto* w : ctx.workers) {
        auto structure = w->lock_structure();
        const auto* ep = find_endpoint(*w, c, info.id);
        if (!ep) continue;
        const auto& st = ep->stats;
        in_flight += st.in_flight_shared.load(std::memory_order_relaxed);
        requests += st.requests_total.load(std::memory_order_relaxed);
        failures += st.failures_total.load(std::memory_order_relaxed);
        score = std::max(score, st.score_shared.load(std::memory_order_relaxed));
        healthy = healthy || st.healthy_shared.load(std::memory_order_relaxed);
      }
      json::object eo;
      eo["address"] = info.address;
      if (!info.host.empty()) eo["host"] = info.host;
      eo["zone"] = info.zone;
      eo["healthy"] = healthy;
      eo["in_flight"] = in_flight;
      eo["requests_total"] = requests;
      eo["connect_failures_total"] = failures;
      eo["score_ms"] = ms(score);  // the highest over workers
      std::array<std::string, 3> errors;
      if (ctx.probe_errors) errors = ctx.probe_errors(c, e);
      if (c < sig->clusters.size() && e < sig->clusters[c].size())
        eo["probe"] = probe_json(sig->clusters[c][e], now, errors);
      if (info.tls) {
        auto v = info.tls.peer->read();
        json::object to;
        to["name"] = info.tls.name;
        to["verify"] = info.tls.context->config().verify;
        to["handshakes"] = v.full;
        to["resumed"] = v.resumed;
        std::uint64_t failed = 0;
        for (auto f : v.failed) failed += f;
        to["failures"] = failed;
        to["last_error"] = v.last_error;
        if (v.last_error_at > 0)
          to["last_error_age_s"] =
              std::round(std::chrono::duration<double>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count() -
                         v.last_error_at);
        eo["tls"] = std::move(to);
      }
      eo["per_worker"] = workers_json(ctx, c, info.id);
      eps.push_back(std::move(eo));
    }
    co["endpoints"] = std::move(eps);
    clusters.push_back(std::move(co));
  }
  root["clusters"] = std::move(clusters);
  return json::serialize(root) + "\n";
}
}  // namespace

// Ready: the gateway is up (listeners bound, config loaded), not draining, and some cluster has
// a healthy endpoint (with every engine frozen or gone there is nothing this replica could
// serve). One dead cluster among others must not take every replica out of a Service, so a
// given cluster's health counts only when asked for: /readyz?cluster=NAME (several allowed)
// also needs a healthy endpoint in each.
response readyz(const context& ctx, std::string_view query) {
  if (ctx.draining && ctx.draining->load())
    return json_error(common::error_kind::draining, "draining");
  bool any = ctx.cfg->clusters.empty();
  for (std::size_t c = 0; c < ctx.cfg->clusters.size() && !any; ++c) any = cluster_healthy(ctx, c);
  if (!any)
    return json_error(common::error_kind::no_healthy_upstream, "no cluster has a healthy endpoint");
  while (!query.empty()) {
    auto amp = query.find('&');
    auto param = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (!param.starts_with("cluster=")) continue;
    auto name = param.substr(8);
    std::size_t c = 0;
    while (c < ctx.cfg->clusters.size() && ctx.cfg->clusters[c].name != name) ++c;
    if (c == ctx.cfg->clusters.size())
      return json_error(common::error_kind::not_found,
                        common::cat("no cluster named '", name, "'"));
    if (!cluster_healthy(ctx, c))
      return json_error(common::error_kind::no_healthy_upstream,
                        common::cat("cluster '", name, "' has no healthy endpoint"));
  }
  return {200, "text/plain", "ready\n"};
}

// 405 with the methods the page takes.
response wrong_method(std::string_view allow, std::string_view path) {
  auto r =
      json_error(common::error_kind::method_not_allowed, common::cat("use ", allow, " for ", path));
  r.allow = std::string(allow);
  return r;
}

// Whether `host` is a loopback address (only this machine can reach a listener there).
bool loopback(std::string_view host) {
  return host == "localhost" || host == "::1" || host.starts_with("127.");
}

std::optional<response> check_token(const std::string& token, std::string_view authorization);

// Mutating admin requests: with a token configured, `Authorization: Bearer <token>` (compared
// in constant time); without one, only on a loopback listener. Nullopt when allowed.
std::optional<response> refuse_mutation(const context& ctx, std::string_view authorization) {
  const auto& token = ctx.cfg->admin.token;
  if (token.empty()) {
    if (loopback(ctx.cfg->admin.address.host)) return std::nullopt;
    return json_error(common::error_kind::forbidden,
                      "the admin listener is not on loopback and admin.token_file is not set: "
                      "mutating requests are refused");
  }
  return check_token(token, authorization);
}

// Pages that show the config (routes, header matches, endpoints): the token when one is set.
std::optional<response> refuse_read(const context& ctx, std::string_view authorization) {
  const auto& token = ctx.cfg->admin.token;
  if (token.empty()) return std::nullopt;
  return check_token(token, authorization);
}

std::optional<response> check_token(const std::string& token, std::string_view authorization) {
  constexpr std::string_view scheme = "Bearer ";
  std::string_view given =
      authorization.starts_with(scheme) ? authorization.substr(scheme.size()) : std::string_view{};
  unsigned diff = given.size() == token.size() ? 0 : 1;
  for (std::size_t i = 0; i < token.size(); ++i)
    diff |= static_cast<unsigned char>(i < given.size() ? given[i] : 0) ^
            static_cast<unsigned char>(token[i]);
  if (diff == 0) return std::nullopt;
  return json_error(common::error_kind::unauthorized,
                    "send Authorization: Bearer <the token in admin.token_file>");
}

response handle(const context& ctx, std::string_view method, std::string_view target,
                std::string_view authorization) {
  auto q = target.find('?');
  std::string_view path = target.substr(0, q);
  bool get = method == "GET" || method == "HEAD";
  if (path == "/metrics") {
    if (!get) return wrong_method("GET, HEAD", path);
    return {200, "text/plain; version=0.0.4; charset=utf-8", ctx.metrics->serialize()};
  }
  if (path == "/livez") return {200, "text/plain", "ok\n"};
  if (path == "/readyz")
    return readyz(ctx, q == std::string_view::npos ? "" : target.substr(q + 1));
  if (path == "/admin/endpoints") {
    if (!get) return wrong_method("GET, HEAD", path);
    return {200, "application/json", endpoints_json(ctx)};
  }
  if (path == "/admin/tenants") {
    if (!get) return wrong_method("GET, HEAD", path);
    if (auto no = refuse_read(ctx, authorization)) return *no;
    auto body = ctx.tenants ? ctx.tenants() : std::string();
    if (body.empty()) return json_error(common::error_kind::not_found, "no tenants are configured");
    return {200, "application/json", std::move(body)};
  }
  if (path == "/admin/reload") {
    if (method != "POST") return wrong_method("POST", path);
    if (auto no = refuse_mutation(ctx, authorization)) return *no;
    if (!ctx.on_reload) return json_error(common::error_kind::not_found, "reload is not available");
    auto why = ctx.on_reload();
    if (!why.empty())
      return json_error(common::error_kind::bad_request,
                        common::cat("config not reloaded, the running one is kept: ", why));
    return {200, "application/json", "{\"reloaded\":true}\n"};
  }
  if (path == "/admin/config") {
    if (!get) return wrong_method("GET, HEAD", path);
    if (auto no = refuse_read(ctx, authorization)) return *no;
    return {200, "application/yaml",
            common::cat("# effective config: ", ctx.cfg->source,
                        " with --set overrides, secrets redacted; keys not shown take their "
                        "defaults\n",
                        ctx.cfg->effective_yaml)};
  }
  if (path == "/admin/undrain") {
    if (method != "POST") return wrong_method("POST", path);
    if (auto no = refuse_mutation(ctx, authorization)) return *no;
    if (ctx.on_undrain && !ctx.on_undrain())
      return json_error(common::error_kind::conflict,
                        "the gateway is stopping (SIGTERM or /admin/quit): it stays drained");
    return {200, "application/json", "{\"draining\":false}\n"};
  }
  if (path == "/admin/drain" || path == "/admin/quit") {
    if (method != "POST") return wrong_method("POST", path);
    if (auto no = refuse_mutation(ctx, authorization)) return *no;
    bool quit = path == "/admin/quit";
    const auto& fn = quit ? ctx.on_quit : ctx.on_drain;
    if (fn) fn();
    return {202, "application/json",
            quit ? "{\"draining\":true,\"stopping\":true}\n"
                 : "{\"draining\":true,\"stopping\":false}\n"};
  }
  return json_error(common::error_kind::not_found, common::cat("no admin page at ", path));
}

namespace {
// The admin pages on the shared HTTP/1.1 server loop.
class admin_handler final : public http::handler {
 public:
  explicit admin_handler(const context& ctx) : ctx_(ctx) {}
  asio::awaitable<void> serve(http::exchange& c) override {
    // A body (POST /admin/drain may carry one) is read whole so the connection can stay open.
    auto got = co_await c.buffer_body(64 * 1024);
    if (got != http::body_result::ok || !c.body().complete()) {
      co_await c.reply_error(common::error_kind::bad_request, "admin requests take small bodies");
      co_return;
    }
    response r = handle(ctx_, c.method(), c.path(), c.head().find("authorization"));
    co_await c.reply(r.status, r.content_type, r.body, r.allow);
  }
  void rejected(http::exchange&) override {}

 private:
  const context& ctx_;
};
}  // namespace

// The admin port's connections: at most 256 at once, served by the admin handler.
struct server::impl final : http::connection_host {
  impl(asio::io_context& io_, context c) : io_ctx(io_), acceptor(io_), ctx(std::move(c)), h(ctx) {
    // The admin port is for operators and scrapers: generous but bounded deadlines.
    env_.settings.idle_timeout = std::chrono::seconds(30);
    env_.settings.header_timeout = std::chrono::seconds(10);
    env_.settings.body_timeout = std::chrono::seconds(10);
    env_.settings.max_body_bytes = 64 * 1024;
    env_.rng = &rng;
  }
  http::connection_env& env() override { return env_; }
  http::handler& served_by() override { return h; }
  void track(http::session& s) override { conns.push_back(s); }
  std::size_t max_connections() const override { return 256; }
  asio::io_context& io() override { return io_ctx; }

  asio::io_context& io_ctx;
  tcp::acceptor acceptor;
  context ctx;
  admin_handler h;
  common::random_source rng{common::os_seed()};
  http::connection_env env_;
  boost::intrusive::list<http::session, boost::intrusive::constant_time_size<false>> conns;
};

server::server(asio::io_context& io, const config::host_port& address, context ctx)
    : impl_(std::make_unique<impl>(io, std::move(ctx))) {
  boost::system::error_code ec;
  tcp::endpoint ep = http::listen_endpoint(address.host, address.port, "admin address");
  auto& a = impl_->acceptor;
  a.open(ep.protocol(), ec);
  if (!ec) a.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) a.bind(ep, ec);
  if (!ec) a.listen(64, ec);
  if (ec)
    throw std::runtime_error(
        common::cat("cannot listen on admin address ", address.to_string(), ": ", ec.message()));
}

server::~server() = default;

void server::set_config(const config::gateway_config* cfg) {
  impl_->ctx.cfg = cfg;
}

void server::start() {
  asio::co_spawn(impl_->io_ctx, http::accept_loop(impl_->acceptor, *impl_, "admin"),
                 asio::detached);
}

void server::close() {
  boost::system::error_code ignored;
  impl_->acceptor.close(ignored);
  for (auto& c : impl_->conns) c.abort();
}

std::string server::bound() const {
  boost::system::error_code ec;
  auto ep = impl_->acceptor.local_endpoint(ec);
  return common::cat(ep.address().to_string(), ':', ep.port());
}

}  // namespace meridian::admin
