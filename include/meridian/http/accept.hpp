// Accepting client connections for a connection_host: the one accept loop every listener runs
// (data listeners and the admin port), admission against the host's connection cap and drain,
// and the one parser of listening addresses. Each loop runs on its acceptor's worker thread.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <cstdint>
#include <string>
#include <string_view>

#include "meridian/http/connection.hpp"
#include "meridian/tls/context.hpp"

namespace meridian::http {

// Admits an accepted connection on `host` (its thread): over the host's connection cap or while
// it drains, the client gets a short 503 (plain) or is closed (TLS); else it starts as an
// http::connection served by the host's handler. With `tls`, the TLS handshake comes first,
// under the context's handshake deadline, counted against the cap while it runs; a client that
// speaks plain HTTP to the TLS port gets a 400 saying so; every failure is counted by reason. A
// TLS client that chose h2 by ALPN gets the HTTP/2 codec; with `h2c`, a plain client whose first
// bytes are the HTTP/2 preface does (prior knowledge), any other HTTP/1.1.
void admit(connection_host& host, asio::ip::tcp::socket socket, tls::context_slot* tls = nullptr,
           bool h2c = false);

// Accepts on `acceptor` until it is closed, admitting each connection to `host`. A failed accept
// (EMFILE, ENFILE, ENOBUFS: the process or the system is out of descriptors or memory) is logged,
// rate-limited, and waits 50 ms before the next try instead of spinning. `name` names the
// listener in the log.
asio::awaitable<void> accept_loop(asio::ip::tcp::acceptor& acceptor, connection_host& host,
                                  std::string name, tls::context_slot* tls = nullptr,
                                  bool h2c = false);

// The address to listen on: an IP literal ("localhost" is 127.0.0.1), else std::runtime_error
// naming `what` ("listener address", "admin address").
asio::ip::tcp::endpoint listen_endpoint(std::string_view host, std::uint16_t port,
                                        std::string_view what);

}  // namespace meridian::http
