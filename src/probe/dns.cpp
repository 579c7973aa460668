#include "meridian/probe/dns.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>

#include "meridian/common/log.hpp"

namespace meridian::probe {

namespace asio = boost::asio;

struct dns_refresh::impl {
  impl(asio::io_context& io_, std::shared_ptr<const config::gateway_config> c, handler h)
      : io(io_), cfg(std::move(c)), on_result(std::move(h)), timer(io_), resolver(io_) {}
  asio::io_context& io;
  std::shared_ptr<const config::gateway_config> cfg;
  handler on_result;
  asio::steady_timer timer;
  asio::ip::tcp::resolver resolver;
  bool stopped = false;
};

namespace {
asio::awaitable<upstream::resolution> lookup(std::shared_ptr<dns_refresh::impl> p,
                                             const config::gateway_config& cfg,
                                             const std::string& host) {
  if (!cfg.dns.hosts_file.empty()) co_return upstream::lookup_hosts_file(cfg.dns.hosts_file, host);
  auto [ec, results] =
      co_await p->resolver.async_resolve(host, "", asio::as_tuple(asio::use_awaitable));
  std::vector<asio::ip::address> found;
  for (const auto& e : results) found.push_back(e.endpoint().address());
  co_return upstream::resolution_of(ec, std::move(found));
}

asio::awaitable<void> run(std::shared_ptr<dns_refresh::impl> p) {
  while (!p->stopped) {
    p->timer.expires_after(p->cfg->dns.refresh);
    auto [ec] = co_await p->timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec || p->stopped) co_return;
    auto cfg = p->cfg;  // a reload during the look-ups applies from the next round
    auto names = upstream::hostnames(*cfg);
    if (names.empty()) continue;
    upstream::name_table table;
    for (const auto& host : names) {
      auto r = co_await lookup(p, *cfg, host);
      if (p->stopped) co_return;
      table[host] = std::move(r);
    }
    p->on_result(std::move(cfg), std::move(table));
  }
}
}  // namespace

dns_refresh::dns_refresh(asio::io_context& io, std::shared_ptr<const config::gateway_config> cfg,
                         handler on_result)
    : impl_(std::make_shared<impl>(io, std::move(cfg), std::move(on_result))) {}

dns_refresh::~dns_refresh() {
  stop();
}

void dns_refresh::start() {
  asio::co_spawn(impl_->io, run(impl_), asio::detached);
}

void dns_refresh::set_config(std::shared_ptr<const config::gateway_config> cfg) {
  impl_->cfg = std::move(cfg);
}

void dns_refresh::stop() {
  impl_->stopped = true;
  impl_->timer.cancel();
  impl_->resolver.cancel();
}

bool merge_names(const upstream::name_table& previous, upstream::name_table& fresh) {
  bool changed = false;
  for (auto& [host, r] : fresh) {
    auto it = previous.find(host);
    if (!r.error.empty()) {
      if (it != previous.end() && !it->second.addresses.empty()) {
        if (it->second.error.empty())
          common::log(common::log_level::warn, "dns", "endpoint host '", host,
                      "' does not resolve now (", r.error, "); keeping its ",
                      it->second.addresses.size(), " address(es)");
        r.addresses = it->second.addresses;
      } else if (it == previous.end() || it->second.error != r.error) {
        common::log(common::log_level::warn, "dns", "endpoint host '", host,
                    "' does not resolve: ", r.error);
      }
    }
    std::sort(r.addresses.begin(), r.addresses.end());
    auto before =
        it == previous.end() ? std::vector<boost::asio::ip::address>{} : it->second.addresses;
    std::sort(before.begin(), before.end());
    if (before != r.addresses) {
      changed = true;
      common::log(common::log_level::info, "dns", "endpoint host '", host, "' now has ",
                  r.addresses.size(), " address(es), had ", before.size());
    }
  }
  for (const auto& [host, r] : previous)
    if (!fresh.contains(host)) changed = true;
  return changed;
}

}  // namespace meridian::probe
