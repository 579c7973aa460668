// A one-shot unary gRPC call for the control thread (h2c, prior knowledge): health checks
// (KServe v2 ServerReady, grpc.health.v1) and model-repository discovery (Triton's
// RepositoryIndex, KServe v2 ModelReady) on gRPC backends. Each call opens its own connection,
// as probe::fetch does, so the connect time is measured every time.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "meridian/common/clock.hpp"
#include "meridian/probe/fetch.hpp"
#include "meridian/upstream/link.hpp"

namespace meridian::probe {

struct grpc_fetch_request {
  upstream::resolved_address endpoint;
  std::string authority;  // :authority ("host:port")
  std::string method;     // "/package.Service/Method"
  std::string message;    // the request message, serialized (unframed)
  std::chrono::nanoseconds timeout{std::chrono::seconds(1)};
  std::size_t max_message = 4 * 1024 * 1024;
  upstream::tls_target tls;  // where the endpoint speaks TLS (h2 by ALPN)
};

// Calls `req.method` and reads the whole response. In the result: ok once the call ended with a
// grpc-status (any), `status` that grpc-status, `error` why not ok or the grpc-message of a
// status other than OK, `body` the first response message (unframed), and the times as
// probe::fetch reports them (connect: TCP connect and the HTTP/2 preface; response: the call
// written -> its response head). Never throws.
boost::asio::awaitable<fetch_result> grpc_fetch(boost::asio::io_context& io, grpc_fetch_request req,
                                                const common::clock& clock);

// A health probe: `req.method` is KServe v2's ServerReady or grpc.health.v1's Check (both answer
// field 1 = 1 when ready / SERVING; req.message is empty for either). The result reads as an HTTP
// probe's: status 200 when ready; otherwise not ok, with why ("grpc-status 14 ...", "not ready").
boost::asio::awaitable<fetch_result> grpc_ready(boost::asio::io_context& io, grpc_fetch_request req,
                                                const common::clock& clock);

// The models an endpoint serves: Triton's RepositoryIndex (ready models only; `req.method` is
// RepositoryIndex's path), else, where the server does not implement it (UNIMPLEMENTED), KServe
// v2's ModelReady for each of `names`. nullopt with `why` when neither answers.
struct model_list {
  std::optional<std::vector<std::string>> ids;
  std::string why;
};
boost::asio::awaitable<model_list> grpc_models(boost::asio::io_context& io, grpc_fetch_request req,
                                               std::vector<std::string> names,
                                               const common::clock& clock);

}  // namespace meridian::probe
