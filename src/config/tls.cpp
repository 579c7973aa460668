// listeners[].tls: certificates, versions, ALPN, mutual TLS, tickets, the handshake deadline.
// The files are checked readable here; their contents are loaded (and refused with OpenSSL's
// reason) when the listener's TLS context is built.
#include <fstream>

#include "config/sections.hpp"

namespace meridian::config {

namespace {
std::string readable_file(const reader& r, const YAML::Node& n, const std::string& k) {
  auto path = r.scalar(n, k);
  if (path.empty()) r.fail(n, k, "expected a file path");
  std::ifstream f(path);
  if (!f) r.fail(n, k, common::cat("cannot read '", path, "'"));
  return path;
}
}  // namespace

listener_tls_config read_listener_tls(const reader& r, const YAML::Node& n, const std::string& k) {
  r.only_keys(n, k, {"certificates", "min_version", "alpn", "client_ca", "session_tickets",
                     "handshake_timeout"});
  listener_tls_config out;
  auto certs = n["certificates"];
  if (!certs || !certs.IsSequence() || certs.size() == 0)
    r.fail(certs ? certs : n, k + ".certificates",
           "expected a non-empty list of { cert: <PEM chain file>, key: <PEM key file> }");
  for (std::size_t i = 0; i < certs.size(); ++i) {
    auto ck = common::cat(k, ".certificates[", i, ']');
    auto c = certs[i];
    r.only_keys(c, ck, {"cert", "key"});
    if (!c["cert"]) r.fail(c, ck + ".cert", "missing");
    if (!c["key"]) r.fail(c, ck + ".key", "missing");
    out.certificates.push_back(
        {readable_file(r, c["cert"], ck + ".cert"), readable_file(r, c["key"], ck + ".key")});
  }
  if (auto v = n["min_version"]) {
    auto s = r.scalar(v, k + ".min_version");
    if (s == "1.2")
      out.min_version = 12;
    else if (s == "1.3")
      out.min_version = 13;
    else if (s == "1.0" || s == "1.1")
      r.fail(v, k + ".min_version", common::cat("TLS ", s, " is never offered (write 1.2 or 1.3)"));
    else
      r.fail(v, k + ".min_version", common::cat("expected 1.2 or 1.3, got '", s, "'"));
  }
  if (auto v = n["alpn"]) {
    if (!v.IsSequence() || v.size() == 0)
      r.fail(v, k + ".alpn", "expected a non-empty list of protocols (http/1.1)");
    out.alpn.clear();
    for (std::size_t i = 0; i < v.size(); ++i) {
      auto pk = common::cat(k, ".alpn[", i, ']');
      auto p = r.scalar(v[i], pk);
      if (p == "h2")
        r.fail(v[i], pk, "h2 is not served by this version (HTTP/1.1 only: write [http/1.1])");
      if (p != "http/1.1") r.fail(v[i], pk, common::cat("unknown protocol '", p, "' (http/1.1)"));
      for (const auto& q : out.alpn)
        if (q == p) r.fail(v[i], pk, common::cat("'", p, "' is listed twice"));
      out.alpn.push_back(p);
    }
  }
  if (auto v = n["client_ca"]) out.client_ca = readable_file(r, v, k + ".client_ca");
  if (auto v = n["session_tickets"]) out.session_tickets = r.boolean(v, k + ".session_tickets");
  if (auto v = n["handshake_timeout"]) {
    out.handshake_timeout = r.dur(v, k + ".handshake_timeout");
    if (out.handshake_timeout <= duration::zero())
      r.fail(v, k + ".handshake_timeout", "must be positive");
  }
  return out;
}

}  // namespace meridian::config
