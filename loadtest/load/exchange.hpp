// One request on one keep-alive client connection: connect when needed, write the request, read and
// decode the response (plain, chunked, SSE), and account for it. Runs on the worker's thread.
// The pieces HTTP/2 streams share (load/h2_client.cpp): token accounting of OpenAI events and the
// TLS handshake with its figures.
#pragma once
#include "load/worker.hpp"

namespace meridian::loadtest::runner {

// Closes the connection's socket (if any) and marks it for a fresh connect.
void drop_connection(connection* c);
// A slot's loop has ended: an HTTP/1.1 connection is closed, an h2 slot leaves its session.
void release_connection(connection* c);
asio::awaitable<bool> ensure_connected(worker* w, connection* c);
// Sends one request due at `intended` (retried once on a fresh connection when a reused one turns
// out closed) and records its outcome.
asio::awaitable<void> do_request(worker* w, connection* c, steady::time_point intended);

// What a streamed response has shown of its tokens so far.
struct token_progress {
  bool saw_done = false;  // "[DONE]"
  steady::time_point last_token{};
};
// One streamed OpenAI event that arrived at `now`: TTFT, ITL, the token count (until `usage`
// says), errors; events_this_read counts token events that shared one read (clumping).
void on_openai_event(worker* w, outcome& o, token_progress& p, std::string_view ev,
                     steady::time_point now, std::uint32_t& events_this_read);
// The client handshake on a new TLS connection (SNI, verification, the worker's last session
// offered), timed and counted in the worker's handshake figures.
asio::awaitable<bool> tls_handshake(worker* w, asio::ssl::stream<tcp::socket&>& s);
// Keeps a copy of the connection's session for the next new connection to resume.
void keep_session(worker* w, SSL* ssl);

}  // namespace meridian::loadtest::runner
