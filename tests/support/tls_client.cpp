#include "support/tls_client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace test {

namespace {
void run(const std::string& cmd) {
  if (std::system((cmd + " >/dev/null 2>&1").c_str()) != 0)
    throw std::runtime_error("failed: " + cmd);
}

std::string last_error() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (!e) return "closed";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}
}  // namespace

pki::pki() {
  char tmpl[] = "/tmp/meridian-pki-XXXXXX";
  dir = ::mkdtemp(tmpl);
  run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " +
      path("ca.key") + " -out " + path("ca.crt") + " -days 30 -subj /CN=Meridian-Test-CA");
  issue("api", "api.test", "api.test,localhost");
  issue("api-rsa", "api.test", "api.test,localhost", "rsa");
  issue("edge", "edge.test", "edge.test,*.edge.test");
  issue("client", "client-a", "client-a");
  run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " +
      path("stranger.key") + " -out " + path("stranger.crt") + " -days 3 -subj /CN=stranger");
}

pki::~pki() {
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

void pki::issue(const std::string& name, const std::string& cn, const std::string& sans,
                const std::string& key, int days) const {
  std::string keyopt = key == "rsa" ? "-newkey rsa:2048"
                                    : "-newkey ec -pkeyopt ec_paramgen_curve:P-256";
  run("openssl req " + keyopt + " -nodes -keyout " + path(name + ".key") + " -out " +
      path(name + ".csr") + " -subj /CN=" + cn);
  std::string ext;
  std::size_t at = 0;
  while (at <= sans.size()) {
    auto comma = sans.find(',', at);
    if (comma == std::string::npos) comma = sans.size();
    ext += (ext.empty() ? "subjectAltName=DNS:" : ",DNS:") + sans.substr(at, comma - at);
    at = comma + 1;
  }
  std::ofstream(path(name + ".ext")) << ext << "\n";
  run("openssl x509 -req -in " + path(name + ".csr") + " -CA " + path("ca.crt") + " -CAkey " +
      path("ca.key") + " -CAcreateserial -out " + path(name + ".crt") + " -days " +
      std::to_string(days) + " -extfile " + path(name + ".ext"));
}

tls_result tls_get(std::uint16_t port, const tls_options& o) {
  // OpenSSL writes with send(2): a server that closed must not kill the test with SIGPIPE.
  ::signal(SIGPIPE, SIG_IGN);
  tls_result r;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(o.timeout_ms);
  auto left = [&] {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  deadline - std::chrono::steady_clock::now())
                  .count();
    return static_cast<int>(std::max<long long>(ms, 0));
  };
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (o.max_version) SSL_CTX_set_max_proto_version(ctx, o.max_version);
  if (o.min_version) {
    SSL_CTX_set_min_proto_version(ctx, o.min_version);
    SSL_CTX_set_security_level(ctx, 0);  // let OpenSSL offer old versions for the test
  }
  if (!o.ciphers.empty()) SSL_CTX_set_cipher_list(ctx, o.ciphers.c_str());
  if (o.no_ticket) SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  if (!o.ca.empty()) {
    SSL_CTX_load_verify_locations(ctx, o.ca.c_str(), nullptr);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  }
  if (!o.cert.empty() &&
      (SSL_CTX_use_certificate_chain_file(ctx, o.cert.c_str()) != 1 ||
       SSL_CTX_use_PrivateKey_file(ctx, o.key.c_str(), SSL_FILETYPE_PEM) != 1)) {
    r.error = "client certificate " + o.cert + ": " + last_error();  // a test's mistake
    SSL_CTX_free(ctx);
    return r;
  }
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{o.timeout_ms / 1000, (o.timeout_ms % 1000) * 1000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  SSL* ssl = nullptr;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    r.error = "connect failed";
  } else {
    ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (!o.sni.empty()) SSL_set_tlsext_host_name(ssl, o.sni.c_str());
    if (!o.alpn.empty()) {
      std::vector<unsigned char> wire;
      for (const auto& p : o.alpn) {
        wire.push_back(static_cast<unsigned char>(p.size()));
        wire.insert(wire.end(), p.begin(), p.end());
      }
      SSL_set_alpn_protos(ssl, wire.data(), static_cast<unsigned>(wire.size()));
    }
    if (o.resume) SSL_set_session(ssl, o.resume);
    ERR_clear_error();
    if (SSL_connect(ssl) != 1) {
      r.error = last_error();
    } else {
      r.handshake_ok = true;
      r.version = SSL_get_version(ssl);
      r.reused = SSL_session_reused(ssl) == 1;
      const unsigned char* p = nullptr;
      unsigned len = 0;
      SSL_get0_alpn_selected(ssl, &p, &len);
      if (p) r.alpn.assign(reinterpret_cast<const char*>(p), len);
      if (X509* peer = SSL_get0_peer_certificate(ssl)) {
        char cn[256] = {};
        X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof cn);
        r.server_cn = cn;
        if (EVP_PKEY* k = X509_get0_pubkey(peer))
          r.server_key_type = EVP_PKEY_get0_type_name(k) ? EVP_PKEY_get0_type_name(k) : "";
      }
      std::string req = "GET " + o.path + " HTTP/1.1\r\nHost: " + (o.sni.empty() ? "test" : o.sni) +
                        "\r\nConnection: close\r\n\r\n";
      if (SSL_write(ssl, req.data(), static_cast<int>(req.size())) <= 0) {
        r.error = "write failed: " + last_error();
      } else {
        char buf[16384];
        while (left() > 0) {
          int n = SSL_read(ssl, buf, sizeof buf);
          if (n <= 0) {
            if (r.response.empty()) r.error = "read failed: " + last_error();
            break;
          }
          r.response.append(buf, static_cast<std::size_t>(n));
        }
        if (r.response.rfind("HTTP/1.1 ", 0) == 0) r.status = std::atoi(r.response.c_str() + 9);
      }
      // Sessions (TLS 1.3 tickets arrive after the handshake, read with the response); a session
      // stays resumable only if this side closes properly.
      SSL_shutdown(ssl);
      r.session = SSL_get1_session(ssl);
    }
  }
  if (ssl) SSL_free(ssl);
  ::close(fd);
  SSL_CTX_free(ctx);
  return r;
}

}  // namespace test
