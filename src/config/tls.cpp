// listeners[].tls: certificates, versions, ALPN, mutual TLS, tickets, the handshake deadline;
// clusters[].tls: the CA, verification, the name sent, a client certificate.
// The files are checked readable here; their contents are loaded (and refused with OpenSSL's
// reason) when the listener's TLS context is built.
#include <cctype>
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

int read_min_version(const reader& r, const YAML::Node& v, const std::string& k) {
  auto s = r.scalar(v, k);
  if (s == "1.2") return 12;
  if (s == "1.3") return 13;
  if (s == "1.0" || s == "1.1")
    r.fail(v, k, common::cat("TLS ", s, " is never offered (write 1.2 or 1.3)"));
  r.fail(v, k, common::cat("expected 1.2 or 1.3, got '", s, "'"));
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
    r.only_keys(c, ck, {"cert", "key", "default"});
    if (!c["cert"]) r.fail(c, ck + ".cert", "missing");
    if (!c["key"]) r.fail(c, ck + ".key", "missing");
    out.certificates.push_back(
        {readable_file(r, c["cert"], ck + ".cert"), readable_file(r, c["key"], ck + ".key")});
    if (auto d = c["default"]) {
      out.certificates.back().is_default = r.boolean(d, ck + ".default");
      for (std::size_t j = 0; j + 1 < out.certificates.size(); ++j)
        if (out.certificates.back().is_default && out.certificates[j].is_default)
          r.fail(d, ck + ".default",
                 common::cat("certificates[", j, "] is the default already (one at most)"));
    }
  }
  if (auto v = n["min_version"]) out.min_version = read_min_version(r, v, k + ".min_version");
  if (auto v = n["alpn"]) {
    if (!v.IsSequence() || v.size() == 0)
      r.fail(v, k + ".alpn", "expected a non-empty list of protocols (h2, http/1.1)");
    out.alpn.clear();
    for (std::size_t i = 0; i < v.size(); ++i) {
      auto pk = common::cat(k, ".alpn[", i, ']');
      auto p = r.scalar(v[i], pk);
      if (p != "http/1.1" && p != "h2")
        r.fail(v[i], pk, common::cat("unknown protocol '", p, "' (h2, http/1.1)"));
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

upstream_tls_config read_upstream_tls(const reader& r, const YAML::Node& n, const std::string& k) {
  upstream_tls_config out;
  if (!n.IsMap()) r.fail(n, k, "expected a map (ca, verify, sni, cert, key, min_version) or {}");
  r.only_keys(n, k, {"ca", "verify", "sni", "cert", "key", "min_version"});
  if (auto v = n["verify"]) out.verify = r.boolean(v, k + ".verify");
  if (auto v = n["ca"]) {
    if (!out.verify)
      r.fail(v, k + ".ca", "verify is false, so no certificate is checked against this CA");
    out.ca = readable_file(r, v, k + ".ca");
  }
  if (auto v = n["sni"]) {
    out.sni = r.scalar(v, k + ".sni");
    bool ok = !out.sni.empty() && out.sni.size() <= 253;
    for (char c : out.sni)
      ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.');
    if (!ok) r.fail(v, k + ".sni", common::cat("expected a DNS name, got '", out.sni, "'"));
  }
  if (n["cert"] || n["key"]) {
    if (!n["cert"]) r.fail(n, k + ".cert", "missing (a client key needs its certificate)");
    if (!n["key"]) r.fail(n, k + ".key", "missing (a client certificate needs its key)");
    out.cert = readable_file(r, n["cert"], k + ".cert");
    out.key = readable_file(r, n["key"], k + ".key");
  }
  if (auto v = n["min_version"]) out.min_version = read_min_version(r, v, k + ".min_version");
  return out;
}

}  // namespace meridian::config
