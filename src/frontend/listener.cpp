#include "meridian/frontend/listener.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <cerrno>
#include <map>
#include <stdexcept>

#include "meridian/common/error.hpp"
#include "meridian/common/log.hpp"
#include "meridian/http/accept.hpp"

namespace meridian::frontend {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {
struct acceptor_slot {
  tcp::acceptor acceptor;
  http::connection_host* host;
  std::string name;
  tls::context_slot* tls;
  bool h2c;
};

// What a TLS listener's files are now: device, inode, size and change time of each, following
// symlinks (a Secret mount swaps a symlink to a new directory; an editor rewrites in place).
std::string fingerprint(const config::listener_tls_config& t) {
  std::string out;
  auto add = [&out](const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
      out += common::cat(path, ":missing;");
      return;
    }
    out += common::cat(path, ':', st.st_dev, ':', st.st_ino, ':', st.st_size, ':',
                       st.st_mtim.tv_sec, '.', st.st_mtim.tv_nsec, ':', st.st_ctim.tv_sec, '.',
                       st.st_ctim.tv_nsec, ';');
  };
  for (const auto& c : t.certificates) {
    add(c.cert);
    add(c.key);
  }
  if (!t.client_ca.empty()) add(t.client_ca);
  return out;
}

struct tls_listener {
  std::unique_ptr<tls::context_slot> slot;
  config::listener_tls_config cfg;  // what the context in force was built from
  std::string seen;                 // the files' fingerprint when last loaded or tried
};
}  // namespace

// SO_REUSEPORT would let this gateway share a port another process listens on, and split its
// traffic silently: a port taken without it is an error at start.
void refuse_taken(const tcp::endpoint& ep, const config::listener_config& l) {
  if (ep.port() == 0) return;
  int fd = ::socket(ep.protocol().family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  bool taken = ::bind(fd, ep.data(), static_cast<socklen_t>(ep.size())) != 0 && errno == EADDRINUSE;
  ::close(fd);
  if (taken)
    throw std::runtime_error(common::cat("cannot listen on ", l.address.to_string(), " (", l.name,
                                         "): the address is already in use by another process"));
}

struct listener_set::impl {
  std::vector<std::unique_ptr<acceptor_slot>> slots;
  std::map<std::string, tls_listener> tls;  // by listener name
};

listener_set::listener_set(const config::gateway_config& cfg,
                           std::vector<http::connection_host*> hosts)
    : impl_(std::make_unique<impl>()) {
  for (const auto& l : cfg.listeners) {
    tcp::endpoint ep = http::listen_endpoint(l.address.host, l.address.port, "listener address");
    refuse_taken(ep, l);
    tls::context_slot* tls_slot = nullptr;
    if (l.tls) {
      auto& t = impl_->tls[l.name];
      t.cfg = *l.tls;
      t.seen = fingerprint(t.cfg);
      t.slot = std::make_unique<tls::context_slot>(
          l.name, std::make_shared<const tls::server_context>(l.name, t.cfg, nullptr));
      tls_slot = t.slot.get();
    }
    for (auto* h : hosts) {
      auto slot = std::make_unique<acceptor_slot>(
          acceptor_slot{tcp::acceptor(h->io()), h, l.name, tls_slot, l.http2});
      boost::system::error_code ec;
      auto& a = slot->acceptor;
      a.open(ep.protocol(), ec);
      if (!ec) a.set_option(tcp::acceptor::reuse_address(true), ec);
      if (!ec) {
        int one = 1;
        if (::setsockopt(a.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
          ec.assign(errno, boost::system::system_category());
      }
      if (!ec) a.bind(ep, ec);
      if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
      if (ec)
        throw std::runtime_error(common::cat("cannot listen on ", l.address.to_string(), " (",
                                             l.name, "): ", ec.message()));
      // Port 0: the first worker's bind picks the port; the others join it.
      ep = a.local_endpoint();
      impl_->slots.push_back(std::move(slot));
    }
    bound_.push_back(common::cat(l.name, '=', ep.address().to_string(), ':', ep.port()));
  }
}

listener_set::~listener_set() = default;

void listener_set::start() {
  for (auto& s : impl_->slots)
    asio::co_spawn(s->acceptor.get_executor(),
                   http::accept_loop(s->acceptor, *s->host, s->name, s->tls, s->h2c), asio::detached);
}

void listener_set::close() {
  for (auto& s : impl_->slots) {
    asio::post(s->acceptor.get_executor(), [slot = s.get()] {
      boost::system::error_code ignored;
      slot->acceptor.close(ignored);
    });
  }
}

std::string listener_set::reload_tls(const config::gateway_config& cfg) {
  std::vector<std::pair<tls_listener*, std::shared_ptr<const tls::server_context>>> next;
  try {
    for (const auto& l : cfg.listeners) {
      auto it = impl_->tls.find(l.name);
      if (!l.tls || it == impl_->tls.end()) continue;  // plain, or not TLS before (a restart)
      auto& t = it->second;
      next.emplace_back(&t, std::make_shared<const tls::server_context>(
                                l.name, *l.tls, t.slot->current()->keys()));
    }
  } catch (const std::exception& e) {
    return e.what();
  }
  for (const auto& l : cfg.listeners) {
    auto it = impl_->tls.find(l.name);
    if (!l.tls || it == impl_->tls.end()) continue;
    it->second.cfg = *l.tls;
    it->second.seen = fingerprint(*l.tls);
  }
  for (auto& [t, ctx] : next) t->slot->set(std::move(ctx));
  return {};
}

std::vector<std::string> listener_set::check_files() {
  std::vector<std::string> out;
  for (auto& [name, t] : impl_->tls) {
    auto now = fingerprint(t.cfg);
    if (now == t.seen) continue;
    t.seen = now;  // a broken file is tried once, then again when it changes
    try {
      t.slot->set(
          std::make_shared<const tls::server_context>(name, t.cfg, t.slot->current()->keys()));
      common::log(common::log_level::info, "tls", "listener ", name,
                  ": certificate files changed, new handshakes use them");
      out.emplace_back();
    } catch (const std::exception& e) {
      common::log(common::log_level::warn, "tls", "certificate files changed but do not load, ",
                  "the certificates in force are kept: ", e.what());
      out.emplace_back(e.what());
    }
  }
  return out;
}

std::string listener_set::metrics_text() const {
  if (impl_->tls.empty()) return {};
  std::string o;
  auto esc = [](std::string_view v) {
    std::string r;
    for (char c : v) {
      if (c == '\\' || c == '"') r += '\\';
      if (c == '\n') {
        r += "\\n";
        continue;
      }
      r += c;
    }
    return r;
  };
  o += "# HELP meridian_tls_handshakes_total Completed TLS handshakes by listener, version and "
       "whether the session was resumed\n# TYPE meridian_tls_handshakes_total counter\n";
  for (const auto& [name, t] : impl_->tls)
    for (int v = 0; v < 2; ++v)
      for (int r = 0; r < 2; ++r)
        o += common::cat("meridian_tls_handshakes_total{listener=\"", esc(name), "\",version=\"",
                         v ? "TLSv1.3" : "TLSv1.2", "\",resumed=\"", r ? "true" : "false", "\"} ",
                         t.slot->stats().handshakes[v][r].load(std::memory_order_relaxed), '\n');
  o += "# HELP meridian_tls_errors_total Failed TLS handshakes by listener and reason\n"
       "# TYPE meridian_tls_errors_total counter\n";
  for (const auto& [name, t] : impl_->tls)
    for (int f = 0; f < static_cast<int>(tls::failure::count_); ++f)
      o += common::cat("meridian_tls_errors_total{listener=\"", esc(name), "\",reason=\"",
                       tls::to_string(static_cast<tls::failure>(f)), "\"} ",
                       t.slot->stats().failures[f].load(std::memory_order_relaxed), '\n');
  o += "# HELP meridian_tls_certificate_expiry_timestamp_seconds When each certificate in force "
       "expires (Unix time)\n# TYPE meridian_tls_certificate_expiry_timestamp_seconds gauge\n";
  for (const auto& [name, t] : impl_->tls) {
    auto ctx = t.slot->current();
    for (const auto& c : ctx->certificates())
      o += common::cat("meridian_tls_certificate_expiry_timestamp_seconds{listener=\"", esc(name),
                       "\",file=\"", esc(c.file), "\",subject=\"", esc(c.subject), "\",key_type=\"",
                       esc(c.key_type), "\"} ", c.not_after, '\n');
  }
  o += "# HELP meridian_tls_kernel_connections_total TLS connections whose record encryption "
       "the kernel took over (kTLS)\n# TYPE meridian_tls_kernel_connections_total counter\n";
  for (const auto& [name, t] : impl_->tls)
    o += common::cat("meridian_tls_kernel_connections_total{listener=\"", esc(name), "\"} ",
                     t.slot->stats().ktls_connections.load(std::memory_order_relaxed), '\n');
  o += "# HELP meridian_tls_kernel_available 1 where the kernel offers kTLS (its tls module is "
       "loaded); 0: OpenSSL encrypts in user space\n# TYPE meridian_tls_kernel_available gauge\n";
  o += common::cat("meridian_tls_kernel_available ",
                   tls::server_context::kernel_tls_available() ? 1 : 0, '\n');
  return o;
}

}  // namespace meridian::frontend
