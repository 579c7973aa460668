// The upstream half of a gRPC call (proxy/grpc.cpp serves the request half): the worker's
// HTTP/2 channel to an endpoint, the call's head, the request body onto the call (whole, or
// pumped beside the response while it still arrives) and the response relayed to the client.
// Private to proxy; worker thread.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>

#include <memory>
#include <string>

#include "meridian/common/clock.hpp"
#include "meridian/http/exchange.hpp"
#include "meridian/runtime/timer.hpp"
#include "meridian/upstream/h2_channel.hpp"
#include "proxy/request.hpp"

namespace meridian::proxy {

// The request body's payload buffered so far (HTTP/2 bodies without a length are framed as
// chunks in the buffer), at most `cap` bytes of it.
std::string buffered_payload(const http::exchange& ex, std::size_t cap);

// The client leaving resets the call.
struct call_watch final : http::cancellable {
  upstream::h2_call* call = nullptr;
  void cancel() override {
    if (call) call->cancel();
  }
};

// The worker's channel to an endpoint, opened when it has none that can take a call.
boost::asio::awaitable<std::shared_ptr<upstream::h2_channel>> channel_to(
    request& r, const upstream::endpoint_ref& ep, common::time_point deadline, std::string& why);

// The upstream request head: the client's, hop-by-hop fields dropped, with te: trailers, the
// remaining deadline as grpc-timeout and the gateway's forwarding fields.
upstream::h2_fields call_head(const request& r, const upstream::endpoint_ref& ep);

enum class sent { ok, client_gone, failed, call_failed };

// The request's body onto the call: whole from the buffer, else as it arrives.
boost::asio::awaitable<sent> send_body(request& r, upstream::h2_call& call);

// A request body still arriving is pumped onto the call beside the response (a bidirectional
// stream: the client may wait for an answer before it sends more). The pump ends when the body
// does, the client's stream closes (it does once the response has ended) or the call fails;
// serve_grpc waits for it before the call and the request go.
struct body_pump {
  body_pump(boost::asio::io_context& io, const common::clock& c) : wake(io, c) {}
  runtime::timer wake;
  bool running = false, waiting = false;
  sent result = sent::ok;

  void start(boost::asio::io_context& io, request& r, upstream::h2_call& call);
  boost::asio::awaitable<void> finished();
};

enum class relayed { complete, client_left, upstream_failed, upstream_timeout };

// The response: its head, each message as it comes, then the trailers (grpc-status).
boost::asio::awaitable<relayed> relay_call(request& r, upstream::h2_call& call,
                                           const upstream::endpoint_ref& ep,
                                           common::time_point picked, bool streaming);

}  // namespace meridian::proxy
