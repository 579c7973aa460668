#include "meridian/probe/grpc_fetch.hpp"

#include <charconv>

#include "meridian/common/log.hpp"
#include "meridian/common/protowire.hpp"
#include "meridian/upstream/h2_channel.hpp"

namespace meridian::probe {

namespace asio = boost::asio;

namespace {
double secs(common::duration d) {
  return std::chrono::duration<double>(d).count();
}

std::string_view field(const upstream::h2_fields& fs, std::string_view name) {
  for (const auto& [n, v] : fs)
    if (n == name) return v;
  return {};
}

// The first message of a response body in gRPC's framing; false when there is none whole, it is
// compressed (the gateway asks for none) or longer than `cap`.
bool first_message(std::string_view body, std::size_t cap, std::string& out, std::string& why) {
  if (body.size() < 5) {
    why = "the response holds no message";
    return false;
  }
  std::uint32_t len = 0;
  for (int i = 1; i < 5; ++i) len = (len << 8) | static_cast<unsigned char>(body[i]);
  if (body[0] != 0) {
    why = "the response message is compressed";
    return false;
  }
  if (len > cap || body.size() - 5 < len) {
    why = len > cap ? "the response message is too large" : "the response message is cut";
    return false;
  }
  out.assign(body.substr(5, len));
  return true;
}
}  // namespace

asio::awaitable<fetch_result> grpc_fetch(asio::io_context& io, grpc_fetch_request req,
                                         const common::clock& clock) {
  fetch_result r;
  auto t0 = clock.now();
  auto deadline = t0 + std::chrono::duration_cast<common::duration>(req.timeout);
  std::string why;
  auto ch = co_await upstream::h2_channel::open(io, clock, req.endpoint, req.tls, deadline, why);
  auto t1 = clock.now();
  if (!ch) {
    r.error = why == "Connection refused" ? "connect refused" : common::cat("connect: ", why);
    r.total_seconds = secs(t1 - t0);
    co_return r;
  }
  r.connect_seconds = secs(t1 - t0);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(req.timeout).count();
  upstream::h2_fields head{{":method", "POST"},
                           {":scheme", req.tls ? "https" : "http"},
                           {":authority", req.authority},
                           {":path", req.method},
                           {"content-type", "application/grpc"},
                           {"te", "trailers"},
                           {"grpc-timeout", common::cat(std::max<long long>(ms, 1), "m")}};
  std::string body;
  {
    auto call = ch->start(head);
    if (call) call.write(common::grpc_frame(req.message), true);
    bool answered = false;
    if (call) answered = co_await call.headers(deadline);
    if (!answered) {
      r.error = call ? std::string(call.error()) : "the call could not start";
      if (r.error.empty()) r.error = "no response";
    } else {
      r.response_seconds = secs(clock.now() - t1);
      int st = call.status();
      upstream::h2_call::got got = upstream::h2_call::got::data;
      while (st == 200 && got == upstream::h2_call::got::data && body.size() <= req.max_message + 5)
        got = co_await call.read(body, deadline);
      std::string_view grpc_status = field(call.trailers(), "grpc-status");
      if (grpc_status.empty()) grpc_status = field(call.response_fields(), "grpc-status");
      int code = -1;
      std::from_chars(grpc_status.data(), grpc_status.data() + grpc_status.size(), code);
      if (st != 200) {
        r.error = common::cat("HTTP status ", st);
      } else if (got == upstream::h2_call::got::timeout) {
        r.error = "timed out waiting for the response";
      } else if (got == upstream::h2_call::got::failed) {
        r.error = std::string(call.error());
      } else if (body.size() > req.max_message + 5) {
        r.error = "the response message is too large";
      } else if (code < 0 || code > 16) {
        r.error = "the call ended without a grpc-status";
      } else if (code == 0 && !first_message(body, req.max_message, r.body, why)) {
        r.error = why;
      } else {
        r.ok = true;
        r.status = code;
        if (code != 0)
          r.error = common::cat("grpc-status ", code, " ", field(call.trailers(), "grpc-message"),
                                field(call.response_fields(), "grpc-message"));
      }
    }
  }
  ch->close();
  r.total_seconds = secs(clock.now() - t0);
  co_return r;
}

namespace {
// Field 1 of a response message as a varint: ServerReadyResponse.ready, ModelReadyResponse.ready,
// HealthCheckResponse.status (SERVING is 1). -1 when absent or not a varint.
long long first_varint(std::string_view message) {
  common::proto_reader in(message);
  common::proto_field f;
  long long v = 0;  // proto3: an absent field is its default
  while (in.next(f))
    if (f.number == 1) v = f.wire_type == 0 ? static_cast<long long>(f.value) : -1;
  return in.malformed() ? -1 : v;
}

// The names of READY models in a RepositoryIndexResponse (repeated ModelIndex models = 1;
// ModelIndex: name = 1, version = 2, state = 3); nullopt if it is not one.
std::optional<std::vector<std::string>> ready_models(std::string_view message) {
  std::vector<std::string> ids;
  common::proto_reader in(message);
  common::proto_field f;
  while (in.next(f)) {
    if (f.number != 1 || f.wire_type != 2) continue;
    common::proto_reader m(f.bytes);
    common::proto_field g;
    std::string_view name, state;
    while (m.next(g)) {
      if (g.wire_type != 2) continue;
      if (g.number == 1) name = g.bytes;
      if (g.number == 3) state = g.bytes;
    }
    if (m.malformed() || !common::valid_utf8(name)) return std::nullopt;
    if (!name.empty() && (state.empty() || state == "READY")) ids.emplace_back(name);
  }
  if (in.malformed()) return std::nullopt;
  return ids;
}

constexpr int unimplemented = 12;
}  // namespace

asio::awaitable<fetch_result> grpc_ready(asio::io_context& io, grpc_fetch_request req,
                                         const common::clock& clock) {
  auto r = co_await grpc_fetch(io, std::move(req), clock);
  if (!r.ok) co_return r;
  if (r.status != 0) {
    r.ok = false;
    co_return r;
  }
  auto v = first_varint(r.body);
  r.status = v == 1 ? 200 : 503;
  if (v != 1) {
    r.ok = false;
    r.error = v < 0 ? "the answer is not a readiness message" : "the server says it is not ready";
  }
  co_return r;
}

asio::awaitable<model_list> grpc_models(asio::io_context& io, grpc_fetch_request req,
                                        std::vector<std::string> names,
                                        const common::clock& clock) {
  model_list out;
  auto index = req;
  common::proto_put_varint(index.message, 2, 1);  // RepositoryIndexRequest.ready = true
  auto r = co_await grpc_fetch(io, std::move(index), clock);
  if (r.ok && r.status == 0) {
    out.ids = ready_models(r.body);
    if (!out.ids) out.why = "RepositoryIndex: the answer is not a model index";
    co_return out;
  }
  if (!r.ok || r.status != unimplemented || names.empty()) {
    out.why = common::cat("RepositoryIndex: ", r.error);
    if (r.ok && r.status == unimplemented)
      out.why += " (and models.names lists none to ask ModelReady)";
    co_return out;
  }
  // KServe v2 without Triton's repository extension: ask for each listed model.
  std::vector<std::string> ids;
  for (const auto& name : names) {
    auto one = req;
    one.method = "/inference.GRPCInferenceService/ModelReady";
    common::proto_put_bytes(one.message, 1, name);  // ModelReadyRequest.name
    auto m = co_await grpc_fetch(io, std::move(one), clock);
    if (!m.ok) {
      out.why = common::cat("ModelReady ", name, ": ", m.error);
      co_return out;
    }
    // NOT_FOUND (5) or not ready: not served now.
    if (m.status == 0 && first_varint(m.body) == 1) ids.push_back(name);
  }
  out.ids = std::move(ids);
  co_return out;
}

}  // namespace meridian::probe
