#include "meridian/tls/stream.hpp"

#include <openssl/err.h>
#include <openssl/x509.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "meridian/common/log.hpp"
#include "meridian/tls/client.hpp"
#include "tls/openssl.hpp"

namespace meridian::tls {

using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

namespace {
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
// Small pieces of a gather list (a head, chunk framing, small bodies) go out in one record.
constexpr std::size_t record_payload = 16 * 1024;

// After OpenSSL failed: the reason of the last error on this thread's queue, which is cleared
// (the queue is per thread and shared by every connection of the worker).
int take_reason() {
  unsigned long e = ERR_peek_last_error();
  ERR_clear_error();
  return e ? ERR_GET_REASON(e) : 0;
}

constexpr std::size_t input_small = 2 * 1024;
constexpr std::size_t input_large = 17 * 1024;  // a whole record (16 KiB and its overhead)

// The read BIO: OpenSSL takes ciphertext from the stream's input buffer; an empty buffer asks it
// to retry (the stream then reads the socket) unless the peer has closed.
int input_read(BIO* b, char* out, std::size_t len, std::size_t* got) {
  auto* in = static_cast<stream::input*>(BIO_get_data(b));
  BIO_clear_retry_flags(b);
  *got = 0;
  if (in->begin == in->end) {
    if (!in->eof) BIO_set_retry_read(b);
    return 0;
  }
  std::size_t n = std::min(len, in->end - in->begin);
  std::memcpy(out, in->buf.data() + in->begin, n);
  in->begin += n;
  *got = n;
  return 1;
}

long input_ctrl(BIO* b, int cmd, long, void*) {
  auto* in = static_cast<stream::input*>(BIO_get_data(b));
  switch (cmd) {
    case BIO_CTRL_FLUSH:
      return 1;
    case BIO_CTRL_PENDING:
      return static_cast<long>(in->end - in->begin);
    case BIO_CTRL_EOF:
      return in->eof && in->begin == in->end ? 1 : 0;
    default:
      return 0;
  }
}

BIO_METHOD* input_method() {
  static BIO_METHOD* m = [] {
    BIO_METHOD* b = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "meridian input");
    BIO_meth_set_read_ex(b, input_read);
    BIO_meth_set_ctrl(b, input_ctrl);
    BIO_meth_set_create(b, [](BIO* bio) {
      BIO_set_init(bio, 1);
      return 1;
    });
    return b;
  }();
  return m;
}

// A new SSL on `socket`'s descriptor: OpenSSL writes the socket, reads from `in`.
SSL* make_ssl(tcp::socket& socket, SSL_CTX* ctx, stream::input* in) {
  error_code ec;
  socket.non_blocking(true, ec);  // OpenSSL writes the descriptor itself
  SSL* ssl = SSL_new(ctx);
  if (!ssl) return nullptr;
  BIO* rbio = BIO_new(input_method());
  BIO* wbio = BIO_new_socket(socket.native_handle(), BIO_NOCLOSE);
  if (!rbio || !wbio) {
    BIO_free(rbio);
    BIO_free(wbio);
    SSL_free(ssl);
    return nullptr;
  }
  BIO_set_data(rbio, in);
  SSL_set_bio(ssl, rbio, wbio);
  return ssl;
}

// What a failed handshake's error says, for the log and /admin/endpoints.
std::string detail_of(SSL* ssl, int reason) {
  long v = SSL_get_verify_result(ssl);
  if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED && v != X509_V_OK)
    return common::cat("certificate verify failed: ", X509_verify_cert_error_string(v));
  if (reason == 0) return "the connection ended during the handshake";
  const char* r = ERR_reason_error_string(ERR_PACK(ERR_LIB_SSL, 0, reason));
  return r ? r : common::cat("OpenSSL reason ", reason);
}

failure classify(int ssl_error, int reason) {
  if (ssl_error == SSL_ERROR_SYSCALL || ssl_error == SSL_ERROR_ZERO_RETURN) return failure::closed;
  switch (reason) {
    case SSL_R_HTTP_REQUEST:
    case SSL_R_HTTPS_PROXY_REQUEST:
      return failure::plain_http;
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_VERSION_TOO_LOW:
      return failure::protocol_version;
    case SSL_R_NO_SHARED_CIPHER:
    case SSL_R_NO_SHARED_GROUPS:
    case SSL_R_NO_SUITABLE_SIGNATURE_ALGORITHM:
      return failure::no_shared_cipher;
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
      return failure::no_certificate;
    case SSL_R_CERTIFICATE_VERIFY_FAILED:
      return failure::bad_certificate;
    case SSL_R_UNEXPECTED_EOF_WHILE_READING:
      return failure::closed;
    default:
      break;
  }
  if (reason >= SSL_AD_REASON_OFFSET) return failure::alert;
  return failure::other;
}
}  // namespace

std::string_view to_string(failure f) {
  switch (f) {
    case failure::timeout: return "timeout";
    case failure::plain_http: return "plain_http";
    case failure::closed: return "closed";
    case failure::protocol_version: return "protocol_version";
    case failure::no_shared_cipher: return "no_shared_cipher";
    case failure::bad_certificate: return "bad_certificate";
    case failure::no_certificate: return "no_certificate";
    case failure::alert: return "alert";
    case failure::other:
    case failure::count_: break;
  }
  return "other";
}

stream::stream(tcp::socket socket, SSL_CTX* ctx)
    : socket_(std::move(socket)), in_(std::make_unique<input>()) {
  ssl_ = make_ssl(socket_, ctx, in_.get());
  if (ssl_) SSL_set_accept_state(ssl_);
}

stream::stream(tcp::socket socket, std::shared_ptr<const client_context> ctx,
               const std::string& name, std::shared_ptr<peer> p)
    : socket_(std::move(socket)),
      in_(std::make_unique<input>()),
      client_(std::move(ctx)),
      peer_(std::move(p)) {
  ssl_ = make_ssl(socket_, client_->native(), in_.get());
  if (!ssl_) return;
  SSL_set_connect_state(ssl_);
  boost::system::error_code not_ip;
  asio::ip::make_address(name, not_ip);
  bool literal = !not_ip;
  // RFC 6066: no IP addresses in SNI; the certificate must then name the address.
  if (!literal) SSL_set_tlsext_host_name(ssl_, name.c_str());
  if (client_->config().verify) {
    if (literal)
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), name.c_str());
    else
      SSL_set1_host(ssl_, name.c_str());
  }
  if (peer_) {
    SSL_set_ex_data(ssl_, detail::client_peer_index(), peer_.get());
    if (SSL_SESSION* s = peer_->session_for(*client_)) {
      SSL_set_session(ssl_, s);
      SSL_SESSION_free(s);
    }
  }
}

stream::stream(stream&& o) noexcept
    : socket_(std::move(o.socket_)),
      ssl_(std::exchange(o.ssl_, nullptr)),
      in_(std::move(o.in_)),
      stage_(std::move(o.stage_)),
      detail_(std::move(o.detail_)),
      client_(std::move(o.client_)),
      peer_(std::move(o.peer_)) {}

asio::awaitable<error_code> stream::fill() {
  auto& in = *in_;
  if (in.begin == in.end) {
    in.begin = in.end = 0;
    // Back to the small buffer once the bulk has passed.
    if (in.buf.size() > input_small && in.last_fill < input_small) {
      std::vector<char>(input_small).swap(in.buf);
    }
  } else if (in.begin > 0) {
    std::memmove(in.buf.data(), in.buf.data() + in.begin, in.end - in.begin);
    in.end -= in.begin;
    in.begin = 0;
  }
  if (in.buf.size() < input_small) in.buf.resize(input_small);
  if (in.end == in.buf.size()) in.buf.resize(std::max(input_large, in.buf.size() * 2));
  auto [ec, n] =
      co_await socket_.async_read_some(asio::buffer(in.buf.data() + in.end, in.buf.size() - in.end),
                                       use_tuple);
  in.last_fill = n;
  if (ec) {
    in.eof = true;
    co_return ec;
  }
  in.end += n;
  // A full buffer: bulk data flows; the next fill reads up to a whole record.
  if (in.end == in.buf.size() && in.buf.size() < input_large) in.buf.resize(input_large);
  co_return error_code{};
}

stream::~stream() {
  if (ssl_) SSL_free(ssl_);
}

asio::awaitable<bool> stream::handshake(failure& why) {
  if (!ssl_) {
    why = failure::other;
    co_return false;
  }
  while (true) {
    ERR_clear_error();
    int r = SSL_do_handshake(ssl_);
    if (r == 1) co_return true;
    int e = SSL_get_error(ssl_, r);
    if (e == SSL_ERROR_WANT_READ) {
      auto ec = co_await fill();
      if (ec) {
        take_reason();
        why = failure::closed;
        detail_ = common::cat("the connection ended during the handshake (", ec.message(), ")");
        co_return false;
      }
      continue;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
      auto [ec] = co_await socket_.async_wait(tcp::socket::wait_write, use_tuple);
      if (ec) {
        why = failure::closed;
        detail_ = common::cat("the connection ended during the handshake (", ec.message(), ")");
        co_return false;
      }
      continue;
    }
    int reason = take_reason();
    why = classify(e, reason);
    detail_ = detail_of(ssl_, e == SSL_ERROR_SSL ? reason : 0);
    co_return false;
  }
}

asio::awaitable<std::tuple<error_code, std::size_t>> stream::read_some(asio::mutable_buffer b) {
  while (true) {
    std::size_t n = 0;
    int r = SSL_read_ex(ssl_, b.data(), b.size(), &n);
    if (r == 1) co_return std::tuple{error_code{}, n};
    int e = SSL_get_error(ssl_, r);
    if (e == SSL_ERROR_WANT_READ) {
      // The socket's end (EOF) is OpenSSL's to judge: it reads on and reports it; an error ends
      // the stream here.
      auto ec = co_await fill();
      if (ec && ec != asio::error::eof) co_return std::tuple{ec, std::size_t{0}};
      continue;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
      auto [ec] = co_await socket_.async_wait(tcp::socket::wait_write, use_tuple);
      if (ec) co_return std::tuple{ec, std::size_t{0}};
      continue;
    }
    int reason = take_reason();
    // close_notify, or the peer's FIN without it (SSL_OP_IGNORE_UNEXPECTED_EOF): end of stream;
    // anything else (a bad record, an alert, a reset) ends the connection as a reset would, and
    // an alert's words are kept (a TLS 1.3 server refusing a client certificate says so here).
    if (e == SSL_ERROR_ZERO_RETURN) co_return std::tuple{error_code(asio::error::eof), std::size_t{0}};
    if (e == SSL_ERROR_SSL && reason != 0) detail_ = detail_of(ssl_, reason);
    co_return std::tuple{error_code(asio::error::connection_reset), std::size_t{0}};
  }
}

asio::awaitable<std::tuple<error_code, std::size_t>> stream::write_all(
    std::span<const asio::const_buffer> buffers, runtime::write_progress progress, void* ctx) {
  std::size_t total = 0;
  std::string& stage = stage_;  // small pieces gathered into one record, kept between writes
  stage.clear();
  std::size_t i = 0;
  while (i < buffers.size() || !stage.empty()) {
    const char* p = nullptr;
    std::size_t len = 0;
    // Gather consecutive small buffers; a large one goes out from where it is.
    while (i < buffers.size() && buffers[i].size() < record_payload &&
           stage.size() + buffers[i].size() <= record_payload) {
      stage.append(static_cast<const char*>(buffers[i].data()), buffers[i].size());
      ++i;
    }
    if (!stage.empty()) {
      p = stage.data();
      len = stage.size();
    } else if (i < buffers.size()) {
      p = static_cast<const char*>(buffers[i].data());
      len = buffers[i].size();
      ++i;
      if (len == 0) continue;
    } else {
      break;
    }
    while (true) {
      std::size_t n = 0;
      int r = SSL_write_ex(ssl_, p, len, &n);
      if (r == 1) break;
      int e = SSL_get_error(ssl_, r);
      if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
        auto kind = e == SSL_ERROR_WANT_READ ? tcp::socket::wait_read : tcp::socket::wait_write;
        auto [ec] = co_await socket_.async_wait(kind, use_tuple);
        if (ec) co_return std::tuple{ec, total};
        continue;  // the same bytes again, as OpenSSL requires
      }
      take_reason();
      co_return std::tuple{error_code(asio::error::broken_pipe), total};
    }
    total += len;
    stage.clear();
    if (progress) progress(ctx, total);
  }
  // A stage grown by a large write goes back to nothing: idle connections hold little.
  if (stage.capacity() > 4096) std::string().swap(stage);
  co_return std::tuple{error_code{}, total};
}

int stream::peek_state() {
  if (SSL_pending(ssl_) > 0) return 1;
  // No read is in flight while the codec watches: what the socket holds goes into the input
  // buffer here, so OpenSSL can tell data from close_notify.
  auto& in = *in_;
  while (!in.eof) {
    if (in.begin == in.end) in.begin = in.end = 0;
    if (in.buf.size() < input_small) in.buf.resize(input_small);
    if (in.end == in.buf.size()) {
      if (in.buf.size() >= input_large) break;
      in.buf.resize(input_large);
    }
    ssize_t got = ::recv(socket_.native_handle(), in.buf.data() + in.end, in.buf.size() - in.end,
                         MSG_DONTWAIT);
    if (got > 0) {
      in.end += static_cast<std::size_t>(got);
      continue;
    }
    if (got == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) in.eof = true;
    break;
  }
  char ch;
  std::size_t n = 0;
  int r = SSL_peek_ex(ssl_, &ch, 1, &n);
  if (r == 1) return 1;
  int e = SSL_get_error(ssl_, r);
  if (e == SSL_ERROR_WANT_READ) return -1;
  if (e == SSL_ERROR_WANT_WRITE) return 1;
  take_reason();
  return 0;
}

void stream::notify_close() {
  if (!ssl_ || !SSL_is_init_finished(ssl_)) return;
  ERR_clear_error();
  SSL_shutdown(ssl_);  // non-blocking socket: sends close_notify if the buffer has room
  ERR_clear_error();
}

std::string_view stream::version() const { return ssl_ ? SSL_get_version(ssl_) : ""; }

bool stream::resumed() const { return ssl_ && SSL_session_reused(ssl_) == 1; }

std::string_view stream::alpn() const {
  const unsigned char* p = nullptr;
  unsigned len = 0;
  if (ssl_) SSL_get0_alpn_selected(ssl_, &p, &len);
  return p ? std::string_view(reinterpret_cast<const char*>(p), len) : std::string_view{};
}

std::string stream::client_subject() const {
  if (!ssl_) return {};
  X509* peer = SSL_get0_peer_certificate(ssl_);
  if (!peer || SSL_get_verify_result(ssl_) != X509_V_OK) return {};
  BIO* bio = BIO_new(BIO_s_mem());
  if (!bio) return {};
  X509_NAME_print_ex(bio, X509_get_subject_name(peer), 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<std::size_t>(std::max(len, 0L)));
  BIO_free(bio);
  return out;
}

std::string_view stream::server_name() const {
  const char* n = ssl_ ? SSL_get_servername(ssl_, TLSEXT_NAMETYPE_host_name) : nullptr;
  return n ? n : "";
}

bool stream::ktls_send() const {
  return ssl_ && BIO_get_ktls_send(SSL_get_wbio(ssl_)) == 1;
}

}  // namespace meridian::tls
