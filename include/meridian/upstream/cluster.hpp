// Clusters and endpoints as the data path sees them. The control thread resolves the config into
// an immutable topology whose endpoints carry stable identities (the same cluster and address
// keep their id across reloads and DNS changes); each worker keeps its own per-endpoint stats and
// keep-alive pools keyed by that id. A worker_upstreams object is owned and used by one worker
// thread; the admin thread reads only the atomics inside endpoint_stats.
#pragma once

#include <boost/asio/ip/address.hpp>
#include <boost/intrusive/list.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "meridian/common/clock.hpp"
#include "meridian/common/log.hpp"
#include "meridian/config/config.hpp"
#include "meridian/metrics/metrics.hpp"
#include "meridian/upstream/link.hpp"
#include "meridian/upstream/stats.hpp"

namespace meridian::upstream {

using endpoint_id = std::uint32_t;

struct endpoint_info {
  endpoint_id id = 0;
  std::size_t cluster = 0;  // index in the config's clusters (fixed while the gateway runs)
  std::string address;      // "ip:port" ("[v6]:port"); the metrics label
  std::string host;         // the configured name it was resolved from ("" for an IP literal)
  std::string zone;
  bool local_zone = true;  // the gateway's own zone, or either has none
  resolved_address resolved;
  std::shared_ptr<metrics::endpoint_series> series;  // where its metrics go
  std::shared_ptr<load_board> board;                 // its workers' requests in flight
  tls_target tls;  // its cluster speaks TLS to it (empty: plain TCP)
};

struct cluster_info {
  std::string name;
  config::pool_config pool;
  config::latency_config latency;
  config::outlier_config outlier;
  config::prefix_affinity_config prefix;
  std::vector<endpoint_info> endpoints;
};

// What every worker shares: immutable once published.
struct topology {
  std::vector<cluster_info> clusters;
};

// The TLS client contexts of a config's clusters that speak TLS, by cluster name.
using tls_contexts = std::map<std::string, std::shared_ptr<const tls::client_context>>;
// Builds them, reading the CA, certificate and key files now; throws std::runtime_error naming
// the cluster, the file and OpenSSL's reason.
tls_contexts load_client_tls(const config::gateway_config& cfg);

// Hands out endpoint ids; the same (cluster, address) always gets the same id. Control thread.
class identity_table {
 public:
  endpoint_id id_for(const std::string& cluster, const std::string& address);
  // The load board of an endpoint identity: the same one for as long as a topology lists it.
  std::shared_ptr<load_board> board_for(endpoint_id id, unsigned workers);
  // An endpoint identity's TLS state (its session to resume, its handshake counts): the same
  // one for as long as a topology lists it.
  std::shared_ptr<tls::peer> tls_peer_for(endpoint_id id);
  // The client context a cluster's endpoints use: the one set last (a reload re-reads the
  // files), or one built now when there is none for these settings (throws as
  // load_client_tls()).
  std::shared_ptr<const tls::client_context> tls_for(const std::string& cluster,
                                                     const config::upstream_tls_config& cfg);
  void set_tls(tls_contexts contexts) { tls_ = std::move(contexts); }

 private:
  std::map<std::pair<std::string, std::string>, endpoint_id> ids_;
  std::map<endpoint_id, std::weak_ptr<load_board>> boards_;
  std::map<endpoint_id, std::weak_ptr<tls::peer>> peers_;
  tls_contexts tls_;
  endpoint_id next_ = 1;
};

// What the configured hostnames resolve to now: every address of each name (sorted, so a
// resolver's rotation does not reorder endpoints), or why it did not resolve. IP literals are
// never looked up.
struct resolution {
  std::vector<boost::asio::ip::address> addresses;
  std::string error;  // set when the name did not resolve
};
using name_table = std::map<std::string, resolution>;

// What a resolver's answer says: its addresses, or why there are none.
resolution resolution_of(const boost::system::error_code& ec,
                         std::vector<boost::asio::ip::address> found);
// The hostnames a config's endpoints name (IP literals left out).
std::vector<std::string> hostnames(const config::gateway_config& cfg);
// Looks `host` up in a hosts file ("address name [alias...]" lines, # comments): every address
// listed for it, in file order; an error when the file cannot be read or lists no address.
resolution lookup_hosts_file(const std::string& path, const std::string& host);
// Resolves every hostname now, blocking (start-up and reload; the DNS refresh resolves
// asynchronously): from cfg.dns.hosts_file when set, else the system resolver.
name_table resolve_names(const config::gateway_config& cfg);

// The topology of `cfg` given what its hostnames resolve to (control thread): an endpoint per
// address of each configured endpoint; a name that does not resolve adds none. Each endpoint's
// metrics series comes from `reg`.
std::shared_ptr<const topology> build_topology(const config::gateway_config& cfg,
                                               const name_table& names, identity_table& ids,
                                               metrics::registry& reg);
// resolve_names() then build_topology(), logging a warning for each name that did not resolve.
std::shared_ptr<const topology> resolve_topology(const config::gateway_config& cfg,
                                                 identity_table& ids, metrics::registry& reg);
// The metrics series of a topology's endpoints, for registry::set_endpoints().
metrics::endpoint_set series_of(const topology& t);
// Prometheus text for the TLS handshakes to a topology's endpoints (every connection: the
// proxy's and the probes'): meridian_upstream_tls_endpoint_handshakes_total{cluster,endpoint,
// resumed} and meridian_upstream_tls_errors_total{cluster,endpoint,reason}. "" when no cluster
// speaks TLS.
std::string tls_metrics_text(const topology& t);

struct pooled_connection {
  link conn;
  common::time_point idle_since;
};

// A request in flight on an endpoint that wants to know when the probes find the endpoint down
// (an upstream attempt: it gives up at once instead of waiting out its deadline). Unlinks itself
// when destroyed. Worker thread.
class down_watch : public boost::intrusive::list_base_hook<
                       boost::intrusive::link_mode<boost::intrusive::auto_unlink>> {
 public:
  virtual void endpoint_down() = 0;

 protected:
  ~down_watch() = default;
};
using down_watch_list =
    boost::intrusive::list<down_watch, boost::intrusive::constant_time_size<false>>;

struct endpoint_state {
  std::shared_ptr<const topology> owner;  // keeps `info` alive, even after a reload
  const endpoint_info* info = nullptr;
  metrics::endpoint_metrics* metrics = nullptr;  // this worker's block of info->series
  config::pool_config pool;                      // the caps of its cluster
  bool retired = false;  // left the topology; closes connections as they return
  endpoint_stats stats;
  std::vector<pooled_connection> idle;   // most recently used at the back
  std::size_t open = 0;                  // idle + busy connections of this worker
  common::log_limiter connect_warnings;  // "connect to X failed", at most a few per 10 s
  down_watch_list watchers;              // this worker's requests in flight on it
};

struct cluster_state {
  const cluster_info* info = nullptr;
  std::vector<std::shared_ptr<endpoint_state>> endpoints;
  std::vector<const endpoint_stats*> stats_view;  // what balancers read
  prefill_rate prefill;      // pooled over its endpoints: the rate of one not yet learned
  linear_fit batch_fit;      // pooled per-token time against batch size, likewise
  double answer_tokens = 0;  // EWMA of the output tokens of its streamed answers (0: none yet)
};

// Where a request's upstream connection belongs; stays valid across apply() (a removed
// endpoint's state lives on until its last connection is returned).
using endpoint_ref = std::shared_ptr<endpoint_state>;

// How each cluster's endpoints moved in a new topology: for each old position, the new one (or
// `gone`); `changed` is false for a cluster whose endpoints are the same, in the same order.
struct endpoint_moves {
  static constexpr std::uint32_t gone = 0xffffffffu;
  std::vector<std::vector<std::uint32_t>> new_of_old;  // per cluster
  std::vector<bool> moved;                             // per cluster
  bool changed(std::size_t c) const { return c < moved.size() && moved[c]; }
};

class worker_upstreams {
 public:
  // `worker`: which block of each endpoint's metrics series this worker writes.
  worker_upstreams(std::shared_ptr<const topology> topo, unsigned worker);

  // Adopts a new topology: endpoints whose id survives keep their stats and pools; removed
  // ones have their idle connections closed, and their requests in flight finish. Holds the
  // structure lock while it rebuilds. Says where each cluster's endpoints went.
  endpoint_moves apply(std::shared_ptr<const topology> topo);
  // Another thread (the admin pages) walking the clusters and endpoints holds this meanwhile, so
  // apply() cannot rebuild them under it. The worker itself reads them without it.
  std::unique_lock<std::mutex> lock_structure() const {
    return std::unique_lock<std::mutex>(structure_mu_);
  }
  const topology& current() const { return *topo_; }

  cluster_state& cluster(std::size_t i) { return clusters_[i]; }
  const cluster_state& cluster(std::size_t i) const { return clusters_[i]; }
  std::size_t size() const { return clusters_.size(); }

  // A pooled connection that is still open and not past its idle timeout, or nullopt. Stale
  // ones (closed by the backend, or with unexpected bytes waiting) are closed on the way.
  std::optional<link> take_idle(endpoint_state& ep, common::time_point now);
  // Returns a connection after a clean, complete exchange; it is closed instead when the pool is
  // full or the endpoint left the topology. Every connection counted in `open` must come back
  // through release() or closed().
  void release(endpoint_state& ep, link conn, common::time_point now);
  void closed(endpoint_state& ep) { --ep.open; }
  bool may_open(const endpoint_state& ep) const;
  void opened(endpoint_state& ep) { ++ep.open; }
  // Closes idle connections past their idle timeout or already closed by the backend.
  void prune(common::time_point now);
  void close_all_idle();

  // The life of one request on an endpoint, as this worker sees it. In flight counts from
  // the pick, so a burst sees each other's choices. answered() is called once per request, at
  // its first byte (first SSE event for a stream) or at its end if none came. Only this worker
  // writes these; other threads read the mirrors.
  // `prefill`: the seconds of prefill the request is expected to cost the engine (its uncached
  // prompt blocks at the endpoint's rate; 0 when unknown), counted until its first byte.
  void request_started(endpoint_state& ep, common::time_point now, double prefill = 0);
  void answered(endpoint_state& ep, common::time_point picked, double prefill = 0);
  void request_finished(endpoint_state& ep, common::time_point picked, common::time_point now,
                        bool complete);
  // Latency samples in seconds, as measured from the gateway; the probe RTT is taken off so
  // the cost model can add the current one, and so is `queued`, the wait the cost model
  // expected from the endpoint's load at the pick, which it adds again for the next pick
  // (otherwise a burst's queueing would count twice: once as load, once as latency). With
  // prefix affinity, `uncached` (>= 0: the prompt blocks the endpoint was not known to hold)
  // teaches its prefill rate, and that prefill is taken off too.
  void observe_ttft(endpoint_state& ep, double seconds, common::time_point now, double queued = 0,
                    double uncached = -1);
  void observe_response(endpoint_state& ep, double seconds, common::time_point now,
                        double queued = 0, double uncached = -1);
  // Storage: a complete transfer ran at `rate` bytes/s while `sharing` transfers (itself
  // included, on average) shared the endpoint.
  void observe_transfer(endpoint_state& ep, double rate, double sharing, common::time_point now);
  // A stream's time per output token, over `tokens` of them, while `batch` streams (itself
  // included; 0: unknown) shared the endpoint on average.
  void observe_tpot(endpoint_state& ep, double seconds_per_token, common::time_point now,
                    std::size_t tokens = 0, double batch = 0);

  // Passive health (outlier ejection, per worker): connect failures, and 5xx responses or
  // responses cut short (a stream broken off mid-answer, resumed elsewhere or not) in a row,
  // eject an endpoint for a time that grows with each ejection, never more than the cluster's
  // max_ejected_share; a 4xx is the client's doing and never counts. The 5xx count starts over
  // only when a response reaches its end (record_complete), not at a 200 head: a backend that
  // answers 200 and cuts every stream is a failing one.
  void record_connect_failure(endpoint_state& ep, common::time_point now);
  void record_success(endpoint_state& ep);
  void record_status(endpoint_state& ep, int status, common::time_point now);
  void record_complete(endpoint_state& ep);
  void record_cut(endpoint_state& ep, common::time_point now);
  // A hedge race (routes that hedge): the endpoint's try answered before the hedge deadline
  // (on_time), or was overdue and the hedge answered first (lost).
  enum class race { on_time, lost };
  void record_race(endpoint_state& ep, race r, common::time_point now);
  void refresh_health(common::time_point now);
  // Adopts the control thread's probe signals: health verdicts, RTT, scraped load (and this
  // worker's counts at that moment, for dead reckoning), models. A passing probe lifts an
  // ejection; probes that find an endpoint down tell its requests in flight (down_watch).
  void apply_signals(const signals& s);

 private:
  // Why an endpoint is ejected (the log line says it). Slowness and cut streams outlive a passing
  // probe: a probe proves the endpoint alive, not fast, nor able to finish an answer.
  enum class ejection_cause { connect_failures, responses_5xx, cut_streams, hedge_losses };
  void eject(cluster_state& cs, endpoint_state& ep, common::time_point now, ejection_cause why);
  cluster_state& cluster_of(const endpoint_state& ep) { return clusters_[ep.info->cluster]; }
  std::shared_ptr<const topology> topo_;
  std::vector<cluster_state> clusters_;
  unsigned worker_;
  mutable std::mutex structure_mu_;  // apply() against other threads' walks (lock_structure)
};

}  // namespace meridian::upstream
