// A TLS connection over a TCP socket, as the byte stream under the HTTP/1.1 codec. OpenSSL
// writes the socket itself (a socket BIO: no copy of what it sends, and the kernel can take over
// record encryption, kTLS, where it offers it); what it reads comes from a small buffer the
// stream fills with Asio's reads (the reactor's registered read, as for a plain socket: no
// failed read and no re-arming per request), 2 KiB, grown to 17 KiB while bulk data flows.
// OpenSSL's own record buffers are released while a connection idles. Owned and used by one
// worker thread.
#pragma once

#include <openssl/ssl.h>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "meridian/runtime/write.hpp"

namespace meridian::tls {

namespace asio = boost::asio;

class client_context;
class peer;

// Why a handshake failed, as the access log and meridian_tls_errors_total name it.
enum class failure {
  timeout,           // the handshake deadline passed
  plain_http,        // an HTTP request on the TLS port (answered 400)
  closed,            // the client closed or reset during the handshake
  protocol_version,  // no TLS version both accept (e.g. a TLS 1.0 or 1.1 client)
  no_shared_cipher,  // no cipher suite or group both accept
  bad_certificate,   // a client certificate that does not verify (mutual TLS)
  no_certificate,    // mutual TLS and the client sent none
  alert,             // the client aborted with an alert (e.g. it does not trust our certificate)
  other,             // anything else (malformed records, ...)
  count_
};
std::string_view to_string(failure f);

class stream {
 public:
  // Takes the socket and a new SSL object from `ctx` bound to its descriptor, in server mode.
  stream(asio::ip::tcp::socket socket, SSL_CTX* ctx);
  // The same in client mode, to an endpoint: `name` goes out as SNI (unless it is an IP address)
  // and the server's certificate must be valid for it (when `ctx` verifies); `p`'s session is
  // offered for resumption and the new ones the server sends are kept there.
  stream(asio::ip::tcp::socket socket, std::shared_ptr<const client_context> ctx,
         const std::string& name, std::shared_ptr<peer> p);
  stream(stream&& o) noexcept;
  stream& operator=(stream&&) = delete;
  ~stream();

  asio::ip::tcp::socket& socket() { return socket_; }
  SSL* native_handle() { return ssl_; }

  // The handshake (server or client); on failure, why. Ends early when the socket is shut down
  // (deadline).
  asio::awaitable<bool> handshake(failure& why);
  // After a failed handshake, or a read ended by an alert: what the verifier or OpenSSL said
  // ("certificate verify failed: hostname mismatch", "tlsv13 alert certificate required").
  const std::string& failure_detail() const { return detail_; }

  // Reads decrypted bytes into `b` (at least one unless it ends): (error, n). End of stream
  // (close_notify or the TCP FIN) is asio::error::eof.
  asio::awaitable<std::tuple<boost::system::error_code, std::size_t>> read_some(
      asio::mutable_buffer b);
  // Writes the whole gather list as TLS records, calling `progress` after each record (may be
  // null).
  asio::awaitable<std::tuple<boost::system::error_code, std::size_t>> write_all(
      std::span<const asio::const_buffer> buffers, runtime::write_progress progress = nullptr,
      void* ctx = nullptr);

  // Whether the client has gone, without consuming application data: 1 data waits (or
  // nothing decided yet: call again when the socket turns readable, -1 would block), 0 the
  // client closed (close_notify, FIN or reset).
  int peek_state();

  // Sends close_notify if it can without waiting (best effort before the socket shuts down).
  void notify_close();

  // After the handshake: the negotiated version ("TLSv1.3"), whether the session was resumed,
  // the ALPN protocol, the verified client certificate's subject (RFC 2253, empty without one),
  // the SNI name the client asked for, and whether the kernel encrypts (kTLS, send side).
  std::string_view version() const;
  bool resumed() const;
  std::string_view alpn() const;
  std::string client_subject() const;
  std::string_view server_name() const;
  bool ktls_send() const;

 private:
  // Reads more ciphertext from the socket into in_ (Asio's read); the read's error (eof at the
  // end), after which in_ reports the end to OpenSSL.
  asio::awaitable<boost::system::error_code> fill();

 public:
  // Ciphertext read and not yet taken by OpenSSL (the read BIO's source). On the heap: the BIO
  // points at it and the stream moves.
  struct input {
    std::vector<char> buf;
    std::size_t begin = 0, end = 0;
    std::size_t last_fill = 0;  // bytes the last read brought
    bool eof = false;
  };

 private:
  asio::ip::tcp::socket socket_;
  SSL* ssl_ = nullptr;
  std::unique_ptr<input> in_;
  std::string stage_;  // write_all's gathering of small buffers (no allocation per response)
  std::string detail_;
  // Client mode: what the SSL refers to (its context's serial, the peer its sessions go to).
  std::shared_ptr<const client_context> client_;
  std::shared_ptr<peer> peer_;
};

// The codec's view of its byte stream (http::basic_connection<tls::stream>).
inline asio::ip::tcp::socket& lowest_layer_of(stream& s) { return s.socket(); }

}  // namespace meridian::tls
