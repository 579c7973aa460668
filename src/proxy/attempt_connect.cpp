// attempt's connect: a TCP connection to the picked endpoint and, where its cluster speaks TLS,
// the handshake, both under the connect deadline; a failure counted against the endpoint.
#include "meridian/common/log.hpp"
#include "proxy/attempt.hpp"

namespace meridian::proxy {

namespace asio = boost::asio;
using common::outcome;
using common::outcome_kind;

asio::awaitable<outcome> attempt::connect() {
  const auto& ep = ep_;
  const auto& info = *ep->info;
  auto& cm = w_.metrics.cluster(info.cluster);
  if (!w_.ups.may_open(*ep)) {
    co_return fail(outcome_kind::pool_exhausted,
                   common::cat("connection limit reached for endpoint ", info.address));
  }
  w_.ups.opened(*ep);
  link_ = upstream::link::make(w_.io.get_executor());
  auto start = w_.clock->now();
  deadline_.reset();
  deadline_.set(within_total(start + timeouts_.connect));
  auto [ec] = co_await link_.connect(info.resolved);
  bool timed_out = deadline_.expired();
  if (abandoned_) co_return fail(outcome_kind::abandoned, "another attempt answered first");
  if (ec || timed_out)
    co_return connect_failed(timed_out, ec.message(),
                             common::cat("upstream ", info.address, " refused the connection"));
  link_.set_no_delay();
  auto connected = w_.clock->now();
  cm.connect_duration.observe(common::seconds_between(start, connected));
  if (info.tls) {
    // The handshake is part of connecting: the same deadline, and a failure (a certificate
    // that does not verify included) is a connect failure; never a plain fallback.
    auto hs = co_await link_.handshake(info.tls);
    timed_out = deadline_.expired();
    if (abandoned_) co_return fail(outcome_kind::abandoned, "another attempt answered first");
    if (!hs.ok || timed_out)
      co_return connect_failed(
          timed_out, common::cat("TLS handshake failed (", hs.reason, ": ", hs.detail, ")"),
          common::cat("upstream ", info.address, " failed the TLS handshake (", hs.reason, ")"));
    cm.tls_handshake.observe(common::seconds_between(connected, w_.clock->now()));
    cm.tls_handshakes[hs.resumed ? 1 : 0].inc();
  }
  cm.connections_opened.inc();
  w_.ups.record_success(*ep);
  co_return outcome{};
}

outcome attempt::connect_failed(bool timed_out, std::string_view why, std::string message) {
  const auto& info = *ep_->info;
  w_.ups.record_connect_failure(*ep_, w_.clock->now());
  auto err = timed_out ? metrics::upstream_error::timeout : metrics::upstream_error::connect;
  ep_->metrics->errors[static_cast<int>(err)].inc();
  std::uint64_t left = 0;
  if (ep_->connect_warnings.allow(w_.clock->now(), left))
    common::log(common::log_level::warn, "proxy", "connect to ", info.address,
                timed_out ? " timed out" : " failed: ", timed_out ? "" : why,
                common::left_out(left));
  if (timed_out)
    return fail(outcome_kind::connect_timeout,
                common::cat("upstream ", info.address, " did not accept the connection in time"));
  return fail(outcome_kind::connect_failed, std::move(message));
}

}  // namespace meridian::proxy
