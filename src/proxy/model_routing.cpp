#include "proxy/model_routing.hpp"

#include <algorithm>

#include "meridian/common/log.hpp"
#include "meridian/http/chunked.hpp"
#include "meridian/routing/prefix.hpp"

namespace meridian::proxy {

namespace asio = boost::asio;
using common::error_kind;
using metrics::reject_reason;

// ---- model_guard -------------------------------------------------------------------------------

void model_guard::feed_peeked(std::string_view payload) {
  scanner.feed(payload);
  fed += payload.size();
}

namespace {
// Why a body cannot be routed by its model at all, or null: a "model" named twice, nesting too
// deep to read past, a model too long to be one. A JSON parser would read each of these some way;
// the gateway does not guess which.
const char* unroutable(routing::model_scanner::state s) {
  using st = routing::model_scanner::state;
  switch (s) {
    case st::duplicate:
      return "the JSON body names \"model\" more than once";
    case st::too_deep:
      return "the JSON body nests deeper than 64 levels; its \"model\" cannot be read";
    case st::too_long:
      return "the JSON \"model\" is longer than 256 bytes";
    default:
      return nullptr;
  }
}
}  // namespace

bool model_guard::changed() const {
  if (unroutable(scanner.current())) return true;
  if (scanner.has_model() != routed.has_value()) return true;
  return routed && scanner.model() != *routed;
}

bool model_guard::observe(std::string_view payload) {
  // Bytes fed while peeking come through again when the body streams: skip them.
  if (seen + payload.size() <= fed) {
    seen += payload.size();
    return true;
  }
  auto skip = static_cast<std::size_t>(fed > seen ? fed - seen : 0);
  payload.remove_prefix(skip);
  seen += skip + payload.size();
  fed = seen;
  scanner.feed(payload);
  if (!changed()) return true;
  const char* bad = unroutable(scanner.current());
  why_ = bad ? bad : "the JSON \"model\" must appear within the part of the body read for routing";
  return false;
}

namespace {
// Reads as much of the body as the peek allows and feeds it to the model scanner. Returns the
// body result; the guard holds what was found.
asio::awaitable<http::body_result> peek_model(request& r) {
  auto& g = r.guard;
  std::size_t cap = r.cfg().limits.model_peek_bytes;
  auto got = co_await r.ex.buffer_body(cap);
  if (got != http::body_result::ok) co_return got;
  std::string_view raw = r.ex.buffered_body();
  if (r.ex.body().kind() == http::body_kind::chunked) {
    http::for_each_chunk(raw, [&](std::string_view d) {
      if (g.fed < cap) g.feed_peeked(d.substr(0, cap - g.fed));
    });
  } else {
    g.feed_peeked(raw.substr(0, cap));
  }
  if (r.ex.body().complete() && g.fed == r.ex.body().payload_bytes()) g.scanner.finish();
  if (g.scanner.has_model() && !unroutable(g.scanner.current()))
    g.routed = std::string(g.scanner.model());
  co_return got;
}
}  // namespace

// Answers a body the client got wrong (or too slowly); the connection closes after it.
asio::awaitable<void> reply_body_error(request& r, http::body_result got) {
  if (got == http::body_result::client_gone) co_return;
  auto reason = got == http::body_result::timeout     ? reject_reason::body_timeout
                : got == http::body_result::too_large ? reject_reason::body_too_large
                                                      : reject_reason::bad_request;
  r.w.metrics.rejected(reason).inc();
  if (got == http::body_result::timeout) {
    // "request body timeout", or the pace it fell below.
    std::string why = r.ex.note().empty() ? "request body timeout" : std::string(r.ex.note());
    co_await r.ex.reply_error(error_kind::request_timeout, why);
  } else if (got == http::body_result::too_large) {
    co_await r.ex.reply_error(error_kind::payload_too_large, "request body exceeds the size limit");
  } else {
    std::string msg = common::cat("invalid request body: ", r.ex.body_error());
    co_await r.ex.reply_error(error_kind::bad_request, msg);
  }
}

// Reads the body's JSON "model" (as far as the peek allows); answers the client itself (and
// returns false) when the body is bad. From here on the model guard holds the body to it.
asio::awaitable<bool> read_model(request& r) {
  auto got = co_await peek_model(r);
  if (got != http::body_result::ok) {
    co_await reply_body_error(r, got);
    co_return false;
  }
  if (const char* bad = unroutable(r.guard.scanner.current())) {
    r.w.metrics.rejected(reject_reason::bad_request).inc();
    co_await r.ex.reply_error(error_kind::bad_request, bad);
    co_return false;
  }
  r.ctx.model_routed = true;
  co_return true;
}

namespace {

// Whether some endpoint of the cluster may serve `model`: one that lists it, or any while no
// endpoint's list is known yet (discovery has not answered).
bool cluster_serves(const upstream::cluster_state& cs, std::string_view model) {
  bool any_known = false;
  for (const auto* s : cs.stats_view) {
    const auto* models = s->probe.models.get();
    if (models == nullptr) continue;
    any_known = true;
    if (upstream::serves(models, model)) return true;
  }
  return !any_known;
}

// What discovery knows: the models the healthy endpoints of every cluster with discovery serve,
// sorted, each once. Empty while nothing is known.
std::vector<std::string_view> discovered_models(const request& r) {
  std::vector<std::string_view> ids;
  for (std::size_t c = 0; c < r.w.ups.size(); ++c) {
    if (!r.cfg().clusters[c].models.enabled) continue;
    for (const auto* s : r.w.ups.cluster(c).stats_view)
      if (s->healthy && s->probe.models)
        for (const auto& id : *s->probe.models) ids.push_back(id);
  }
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

void append_model(std::string& out, std::string_view id) {
  out += R"({"id":")";
  common::json_escape_append(out, id);
  out += R"(","object":"model","created":0,"owned_by":"meridian"})";
}

// GET /v1/models answered from discovery: the union of what the healthy endpoints of every
// cluster with discovery serve. Empty while nothing is known (the request is then proxied).
std::string models_listing(const std::vector<std::string_view>& ids) {
  if (ids.empty()) return {};
  std::string out = R"({"object":"list","data":[)";
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (i) out += ',';
    append_model(out, ids[i]);
  }
  out += "]}\n";
  return out;
}

}  // namespace

// Chooses the route once the body's JSON "model" is known (a route needs it).
asio::awaitable<bool> route_by_model(request& r, routing::match_result& m) {
  bool read = co_await read_model(r);
  if (!read) co_return false;
  std::string_view model = r.guard.routed ? std::string_view(*r.guard.routed) : "";
  m = r.ctx.snap->routes.match(view_of(r.ex), model);
  co_return true;
}

// Model-aware routing for clusters with discovery: answers /v1/models itself, reads the model a
// body names, and refuses one no endpoint serves. False when the client has been answered.
asio::awaitable<bool> check_model(request& r) {
  const auto& head = r.ex.head();
  constexpr std::string_view one = "/v1/models/";
  bool get = head.method == "GET" || head.method == "HEAD";
  if (get && (head.path == "/v1/models" || head.path.starts_with(one))) {
    auto ids = discovered_models(r);
    if (!ids.empty() && head.path == "/v1/models") {
      co_await r.ex.reply(200, "application/json", models_listing(ids));
      co_return false;
    }
    // GET /v1/models/{id} (the OpenAI SDKs' models.retrieve): the model, or 404 in OpenAI's shape.
    std::string_view id = head.path.substr(std::min(head.path.size(), one.size()));
    id = id.substr(0, id.find('?'));
    if (!ids.empty() && !id.empty()) {
      if (std::binary_search(ids.begin(), ids.end(), id)) {
        std::string out;
        append_model(out, id);
        out += '\n';
        co_await r.ex.reply(200, "application/json", out);
      } else {
        r.w.metrics.rejected(reject_reason::no_route).inc();
        co_await r.ex.reply_error(error_kind::model_not_found,
                                  common::cat("The model `", id, "` does not exist."));
      }
      co_return false;
    }
  }
  if (!r.ctx.model_routed && head.body != http::body_kind::none) {
    bool read = co_await read_model(r);
    if (!read) co_return false;
  }
  if (r.guard.routed && !cluster_serves(r.w.ups.cluster(r.ctx.cluster), *r.guard.routed)) {
    r.w.metrics.rejected(reject_reason::no_route).inc();
    std::string msg = common::cat("The model `", *r.guard.routed, "` does not exist.");
    co_await r.ex.reply_error(error_kind::model_not_found, msg);
    co_return false;
  }
  co_return true;
}

// Prefix affinity's inputs: the prompt's blocks from the body read for routing (as far as the
// model peek reached) and the session header's hash.
void prefix_input(request& r, const config::prefix_affinity_config& pa, routing::pick_input& in) {
  r.blocks.clear();
  std::size_t cap = r.cfg().limits.model_peek_bytes;
  std::string_view raw = r.ex.buffered_body();
  if (r.ex.body().kind() == http::body_kind::chunked) {
    r.scratch.clear();
    http::for_each_chunk(raw, [&](std::string_view d) {
      if (r.scratch.size() < cap) r.scratch.append(d.substr(0, cap - r.scratch.size()));
    });
    raw = r.scratch;
  }
  raw = raw.substr(0, cap);
  routing::hash_blocks(routing::prompt_bytes(raw), pa.block_bytes, cap / pa.block_bytes, r.blocks);
  in.blocks = r.blocks;
  if (!pa.session_header.empty()) {
    auto v = r.ex.head().find(pa.session_header);
    if (!v.empty()) in.session = routing::hash_key(v);
  }
}

}  // namespace meridian::proxy
