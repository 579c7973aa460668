// upstream::link: one connection to a backend endpoint as a try uses it (connect, the TLS
// handshake where the cluster speaks TLS, write, read, shut down, close) and as the pool keeps it.
// Plain TCP or TLS (a client-mode tls::stream): the socket and TLS types stay inside upstream, the
// proxy sees only this. Owned and used by one worker thread (or the control thread's probes).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/system/error_code.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <tuple>

namespace meridian::tls {
class client_context;
class peer;
}  // namespace meridian::tls

namespace meridian::upstream {

// Where an endpoint is reached: an address and a port.
struct resolved_address {
  boost::asio::ip::address ip;
  std::uint16_t port_number = 0;
  const boost::asio::ip::address& address() const { return ip; }
  std::uint16_t port() const { return port_number; }
  bool operator==(const resolved_address&) const = default;
};

// How connections to an endpoint are secured: its cluster's TLS client context, the name sent as
// SNI and verified (the configured sni, else the endpoint's host name, else its address), and the
// endpoint's TLS state that every worker shares (the session to resume, the last failure). Empty:
// plain TCP.
struct tls_target {
  std::shared_ptr<const tls::client_context> context;
  std::string name;
  std::shared_ptr<tls::peer> peer;
  explicit operator bool() const { return context != nullptr; }
};

// A TLS handshake's end: whether it resumed a session, or why it failed ("bad_certificate",
// "closed", "protocol_version", "alert", ...: tls::failure's names) in the verifier's or
// OpenSSL's words.
struct handshake_result {
  bool ok = false;
  bool resumed = false;
  std::string reason;
  std::string detail;
};

class link {
 public:
  link();
  ~link();
  link(link&&) noexcept;
  link& operator=(link&&) noexcept;

  // A new, unconnected connection on `ex`.
  static link make(const boost::asio::any_io_executor& ex);
  explicit operator bool() const { return impl_ != nullptr; }

  // Not coroutines: each returns Asio's operation to await (no frame of its own) on plain TCP.
  // Connects over TCP.
  boost::asio::awaitable<std::tuple<boost::system::error_code>> connect(const resolved_address& to);
  // After connecting, where the endpoint speaks TLS: the handshake, the server's certificate
  // verified as `t`'s context says. From here on reads and writes are TLS records.
  boost::asio::awaitable<handshake_result> handshake(const tls_target& t);
  bool secure() const;
  // The protocol the TLS handshake agreed on by ALPN ("h2", "http/1.1"); "" on plain TCP.
  std::string_view alpn() const;
  // A TLS connection the server ended with an alert before answering anything (a TLS 1.3 server
  // that refuses the gateway's certificate says so only after the handshake): the alert's words,
  // counted once on the endpoint's TLS failures; "" otherwise.
  std::string take_tls_refusal();
  boost::asio::awaitable<std::tuple<boost::system::error_code, std::size_t>> read_some(
      boost::asio::mutable_buffer into);
  // Writes the whole list (runtime::write_all).
  boost::asio::awaitable<std::tuple<boost::system::error_code, std::size_t>> write(
      std::span<const boost::asio::const_buffer> buffers);

  // After connecting: small writes go out at once.
  void set_no_delay();
  // Ends both directions; an operation in progress ends by itself (EOF, EPIPE). Never closed or
  // cancelled under a pending operation: on Asio 1.81's io_uring backend that let a later
  // completion corrupt other requests (loadtest/RESULTS.md).
  void shutdown();
  // With nothing pending (TLS: after a close_notify, if the socket takes it now).
  void close();
  // Whether an idle connection may carry a request: nothing to read (no EOF from the backend,
  // no bytes it should not have sent; TLS: no close_notify). One syscall.
  bool still_usable() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace meridian::upstream
