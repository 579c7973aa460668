#include "load/worker.hpp"

#include <algorithm>
#include <cmath>

#include "load/h2_client.hpp"

namespace meridian::loadtest::runner {

worker::worker(const load_config& c, int idx, int n, shared_state* sh, steady::time_point start)
    : cfg(c),
      index(idx),
      shared(sh),
      ctx(BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO),
      builder(c, c.seed * 7919 + static_cast<std::uint64_t>(idx)),
      pending(c.max_pending),
      start(start),
      schedule(c.arrival, c.burstiness, c.profile().scaled(1.0 / n),
               c.seed * 31 + static_cast<std::uint64_t>(idx), static_cast<double>(idx) / n),
      stopper(ctx) {
  per_request = per_request_thresholds(c.slos);
  end = start + std::chrono::microseconds(static_cast<std::int64_t>(c.duration_s * 1e6));
  warm_end = start + std::chrono::microseconds(static_cast<std::int64_t>(c.warmup_s * 1e6));
  const double drain = std::min(c.drain_s, c.timeout_s);
  hard_end = end + std::chrono::microseconds(static_cast<std::int64_t>(drain * 1e6));
  interval_s = std::max(1.0, std::ceil(c.duration_s / 300.0));
  timeline.resize(static_cast<std::size_t>((c.duration_s + drain) / interval_s) + 2);
  for (std::size_t i = 0; i < timeline.size(); ++i)
    timeline[i].start_s = static_cast<double>(i) * interval_s;
  if (!c.csv_path.empty())
    records.reserve(static_cast<std::size_t>(
        std::min(4e6, std::max(1e3, c.profile().expected_count() / n * 1.1))));
  const int nconn = c.connections / n + (idx < c.connections % n ? 1 : 0);
  for (int i = 0; i < nconn; ++i) {
    if (!c.http2) {
      conns.push_back(std::make_unique<connection>(ctx));
      continue;
    }
    sessions.push_back(std::make_unique<h2_session>(this));
    for (int k = 0; k < c.streams; ++k) {
      conns.push_back(std::make_unique<connection>(ctx));
      conns.back()->h2 = sessions.back().get();
      ++sessions.back()->slots;
    }
  }
  if (c.tls) {
    tls = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
    tls->set_options(asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1 |
                     asio::ssl::context::no_compression);
    SSL_CTX_set_options(tls->native_handle(), SSL_OP_IGNORE_UNEXPECTED_EOF);
    // Sessions are kept by hand (the last one, for the next connection).
    SSL_CTX_set_session_cache_mode(tls->native_handle(),
                                   SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    if (c.insecure) {
      tls->set_verify_mode(asio::ssl::verify_none);
    } else {
      tls->load_verify_file(c.cacert);  // throws with OpenSSL's reason
      tls->set_verify_mode(asio::ssl::verify_peer);
    }
  }
}

worker::~worker() {
  if (session) SSL_SESSION_free(session);
}

int worker::backend_index(std::string_view name) {
  for (std::size_t i = 0; i < backends.size(); ++i)
    if (backends[i].first == name) return static_cast<int>(i);
  backends.emplace_back(std::string(name), 0);
  return static_cast<int>(backends.size() - 1);
}

void worker::wake_one() {
  if (idle.empty()) return;
  auto* c = idle.back();
  idle.pop_back();
  c->idle = false;
  c->wake.cancel();
}

void worker::wake_all() {
  while (!idle.empty()) wake_one();
}

void conn_finished(worker* w) {
  if (--w->live_conns == 0) w->stopper.cancel();
}

}  // namespace meridian::loadtest::runner
