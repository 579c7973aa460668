// The listeners' section: names and addresses each once (two listeners sharing a port through
// SO_REUSEPORT would split traffic silently), TLS, and h2c.
#include <arpa/inet.h>
#include <yaml-cpp/yaml.h>

#include <cstring>

#include "config/reader.hpp"
#include "config/sections.hpp"
#include "meridian/common/log.hpp"

namespace meridian::config {
namespace {

// The host a listener binds, in a form two listeners can be compared by: IP literals
// canonical (the listener binds "localhost" as 127.0.0.1), anything else as written.
std::string bind_host(const std::string& host) {
  if (host == "localhost") return "127.0.0.1";
  unsigned char raw[16];
  char text[INET6_ADDRSTRLEN];
  for (int family : {AF_INET, AF_INET6}) {
    if (::inet_pton(family, host.c_str(), raw) != 1) continue;
    // ::ffff:a.b.c.d is the IPv4 address a.b.c.d: the same socket address to bind.
    static constexpr unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (family == AF_INET6 && std::memcmp(raw, mapped, sizeof mapped) == 0 &&
        ::inet_ntop(AF_INET, raw + 12, text, sizeof text) != nullptr)
      return text;
    if (::inet_ntop(family, raw, text, sizeof text) != nullptr) return text;
  }
  return lower(host);
}

// Two listeners whose binds would conflict. Every worker binds each listener with
// SO_REUSEPORT, so the kernel would let them share the port and split connections between
// them silently. Port 0 asks for a fresh ephemeral port each time, so it never conflicts.
}  // namespace

bool listeners_overlap(const host_port& a, const host_port& b) {
  if (a.port == 0 || a.port != b.port) return false;
  auto ha = bind_host(a.host), hb = bind_host(b.host);
  auto wildcard = [](const std::string& h) { return h == "0.0.0.0" || h == "::"; };
  return ha == hb || wildcard(ha) || wildcard(hb);
}


// Listeners, each name and address once: two listeners sharing a port through SO_REUSEPORT
// would split traffic silently.
std::vector<listener_config> read_listeners(const reader& r, const YAML::Node& root) {
  std::vector<listener_config> out;
  auto ls = root["listeners"];
  if (!ls || !ls.IsSequence() || ls.size() == 0)
    r.fail(ls ? ls : root, "listeners", "expected a non-empty list of listeners");
  for (std::size_t i = 0; i < ls.size(); ++i) {
    auto k = common::cat("listeners[", i, ']');
    auto l = ls[i];
    r.only_keys(l, k, {"name", "address", "tls", "http2"});
    listener_config lc;
    lc.name = l["name"] ? r.scalar(l["name"], k + ".name") : common::cat("listener", i);
    if (!l["address"]) r.fail(l, k + ".address", "missing");
    lc.address = r.address(l["address"], k + ".address");
    if (l["tls"]) lc.tls = read_listener_tls(r, l["tls"], k + ".tls");
    if (auto v = l["http2"]) {
      lc.http2 = r.boolean(v, k + ".http2");
      if (lc.http2 && lc.tls)
        r.fail(v, k + ".http2",
               "h2c is for plain listeners; over TLS, offer h2 by ALPN (tls.alpn: [h2, http/1.1])");
    }
    for (std::size_t j = 0; j < out.size(); ++j) {
      const auto& earlier = out[j];
      if (earlier.name == lc.name)
        r.fail(
            l["name"] ? l["name"] : l, k + ".name",
            common::cat("duplicate listener name '", lc.name, "' (listeners[", j, "] has it too)"));
      if (!listeners_overlap(earlier.address, lc.address)) continue;
      if (bind_host(earlier.address.host) == bind_host(lc.address.host))
        r.fail(l["address"], k + ".address",
               common::cat("duplicate listener address ", lc.address.to_string(), " (listeners[", j,
                           "] '", earlier.name, "' binds ", earlier.address.to_string(), ")"));
      r.fail(l["address"], k + ".address",
             common::cat(lc.address.to_string(), " overlaps listeners[", j, "] '", earlier.name,
                         "' (", earlier.address.to_string(), "): a wildcard address binds port ",
                         lc.address.port, " on every interface"));
    }
    out.push_back(std::move(lc));
  }
  return out;
}

// A bearer token from its file: one line of printable characters, at least 16 of them.
}  // namespace meridian::config
