#include "proxy/grpc_call.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include <array>
#include <vector>

#include "meridian/common/log.hpp"
#include "meridian/http/chunked.hpp"
#include "meridian/http/request_body.hpp"

namespace meridian::proxy {

namespace asio = boost::asio;
using common::error_kind;

namespace {
std::string encode_timeout(common::duration d) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  if (ms < 1) ms = 1;
  if (ms < 100000000) return std::to_string(ms) + "m";
  return std::to_string(ms / 1000) + "S";
}

}  // namespace

std::string buffered_payload(const http::exchange& ex, std::size_t cap) {
  std::string out;
  std::string_view raw = ex.buffered_body();
  if (ex.body().kind() == http::body_kind::chunked)
    http::for_each_chunk(raw, [&](std::string_view d) {
      if (out.size() < cap) out.append(d.substr(0, cap - out.size()));
    });
  else
    out.assign(raw.substr(0, cap));
  return out;
}

asio::awaitable<std::shared_ptr<upstream::h2_channel>> channel_to(request& r,
                                                                  const upstream::endpoint_ref& ep,
                                                                  common::time_point deadline,
                                                                  std::string& why) {
  auto& slot = r.w.grpc_channels[ep->info->id];
  if (slot && slot->usable()) co_return slot;
  if (slot) slot->retire();  // its calls finish on it; new ones go to a new connection
  slot.reset();
  auto ch = co_await upstream::h2_channel::open(r.w.io, *r.w.clock, ep->info->resolved,
                                                ep->info->tls, deadline, why);
  // Another request may have opened one meanwhile: the newer serves.
  if (ch) r.w.grpc_channels[ep->info->id] = ch;
  co_return ch;
}

upstream::h2_fields call_head(const request& r, const upstream::endpoint_ref& ep) {
  const auto& h = r.ex.head();
  upstream::h2_fields out;
  out.emplace_back(":method", std::string(h.method));
  out.emplace_back(":scheme", ep->info->tls ? "https" : "http");
  out.emplace_back(":authority", h.host.empty() ? ep->info->address : std::string(h.host));
  out.emplace_back(":path", std::string(h.path));
  for (const auto& f : h.fields()) {
    std::string name(f.name);
    for (auto& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (h.is_hop_by_hop(name) || name == "host" || name == "grpc-timeout" ||
        name == "x-forwarded-for" || name == "x-request-id" || name == "content-length")
      continue;
    out.emplace_back(std::move(name), std::string(f.value));
  }
  out.emplace_back("te", "trailers");
  out.emplace_back("x-request-id", std::string(r.ex.request_id()));
  out.emplace_back("x-forwarded-for", std::string(r.ex.client_ip()));
  if (r.ctx.deadline != common::time_point::max())
    out.emplace_back("grpc-timeout", encode_timeout(r.ctx.deadline - r.w.clock->now()));
  return out;
}

asio::awaitable<sent> send_body(request& r, upstream::h2_call& call) {
  if (r.ex.body().kind() == http::body_kind::none) {
    call.write({}, true);
    co_return sent::ok;
  }
  if (r.ex.body().complete() && r.ex.body_buffered(0)) {
    call.write(buffered_payload(r.ex, static_cast<std::size_t>(-1)), true);
    co_return sent::ok;
  }
  std::array<std::string_view, 16> spans;
  while (true) {
    std::size_t n = 0;
    auto got = co_await r.ex.read_body(spans, n);
    if (got == http::body_result::client_gone) co_return sent::client_gone;
    if (got != http::body_result::ok) co_return sent::failed;
    bool last = r.ex.body().finished();
    for (std::size_t i = 0; i < n; ++i)
      if (!call.write(spans[i], last && i + 1 == n)) co_return sent::call_failed;
    if (n == 0 || last) {
      if (n == 0) call.write({}, true);
      co_return sent::ok;
    }
  }
}

void body_pump::start(asio::io_context& io, request& r, upstream::h2_call& call) {
  running = true;
  asio::co_spawn(
      io,
      [](request& r, upstream::h2_call& call, body_pump& self) -> asio::awaitable<void> {
        self.result = co_await send_body(r, call);
        self.running = false;
        if (self.waiting) self.wake.cancel();
      }(r, call, *this),
      asio::detached);
}

asio::awaitable<void> body_pump::finished() {
  while (running) {
    waiting = true;
    wake.expires_at(common::time_point::max());
    co_await wake.wait();
    waiting = false;
  }
}

asio::awaitable<relayed> relay_call(request& r, upstream::h2_call& call,
                                    const upstream::endpoint_ref& ep, common::time_point picked,
                                    bool streaming) {
  auto& ctx = r.ctx;
  auto& w = r.w;
  const auto& timeouts = r.cfg().routes[*ctx.route].timeouts;
  std::vector<http::header> fields;
  for (const auto& [n, v] : call.response_fields()) fields.push_back({n, v});
  http::response_head head;
  head.status = call.status();
  head.headers = fields;
  head.header_count = fields.size();
  std::string data;
  auto got = co_await call.read(data, std::min(ctx.deadline, w.clock->now() + timeouts.idle));
  if (got == upstream::h2_call::got::failed || got == upstream::h2_call::got::timeout) {
    // Nothing has reached the client yet: a status it can read.
    // (Worked out before the co_await: GCC 12 destroys a ?: temporary in one twice.)
    bool late = got == upstream::h2_call::got::timeout;
    auto kind = late ? error_kind::upstream_timeout : error_kind::upstream_unavailable;
    std::string why = late ? std::string("upstream sent no message in time")
                           : common::cat("upstream ", ep->info->address, ": ", call.error());
    co_await r.ex.reply_error(kind, why);
    co_return late ? relayed::upstream_timeout : relayed::upstream_failed;
  }
  bool trailers_only = got == upstream::h2_call::got::end && data.empty();
  r.ex.start_response(head, trailers_only ? http::body_kind::none : http::body_kind::chunked, 0);
  ctx.first_byte = w.clock->now();
  bool first = true;
  auto outcome = relayed::upstream_failed;
  while (true) {
    if (got == upstream::h2_call::got::data) {
      // A stream's first message is its time to first token; a unary call's whole time is
      // its response time (below).
      if (first && streaming) {
        auto now = w.clock->now();
        w.ups.observe_ttft(*ep, common::seconds_between(picked, now), now);
      }
      first = false;
      std::array<std::string_view, 1> p{data};
      bool ok = co_await r.ex.send(p, false);
      data.clear();
      if (!ok) {
        outcome = relayed::client_left;
        break;
      }
      got = co_await call.read(data, std::min(ctx.deadline, w.clock->now() + timeouts.idle));
      continue;
    }
    if (got == upstream::h2_call::got::end) {
      std::vector<http::header> trailers;
      for (const auto& [n, v] : call.trailers()) {
        trailers.push_back({n, v});
        if (n == "grpc-status") ctx.grpc_status = v;
      }
      if (trailers_only)
        for (const auto& [n, v] : call.response_fields())
          if (n == "grpc-status") ctx.grpc_status = v;
      r.ex.set_trailers(trailers);
      co_await r.ex.send({}, true);
      outcome = relayed::complete;
    } else {
      bool late = got == upstream::h2_call::got::timeout;
      r.ex.set_note(late ? std::string("upstream idle timeout mid-response")
                         : common::cat("upstream ", ep->info->address, ": ", call.error()));
      if (late) outcome = relayed::upstream_timeout;
    }
    break;
  }
  co_return outcome;
}

}  // namespace meridian::proxy
