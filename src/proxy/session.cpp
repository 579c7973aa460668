// One client connection: read a request, route it, forward it to a backend over a pooled
// connection, stream the response back, repeat. Everything runs on the owning worker's thread.
#include <sys/socket.h>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <array>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/intrusive/list.hpp>
#include <boost/intrusive_ptr.hpp>
#include <cerrno>
#include <cstring>
#include <optional>

#include "meridian/common/error.hpp"
#include "meridian/common/log.hpp"
#include "meridian/common/random.hpp"
#include "meridian/http/chunked.hpp"
#include "meridian/http/headers.hpp"
#include "meridian/http/parser.hpp"
#include "meridian/proxy/access_log.hpp"
#include "meridian/proxy/proxy.hpp"
#include "meridian/routing/balancer.hpp"

namespace meridian::proxy {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using steady = std::chrono::steady_clock;
using error_code = boost::system::error_code;
using common::error_kind;

namespace {
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t initial_buffer = 16 * 1024;
constexpr std::size_t upstream_buffer = 32 * 1024;
constexpr std::size_t max_chunks_per_write = 16;

double seconds_between(steady::time_point a, steady::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

enum class phase : std::uint8_t {
  idle,          // waiting for the first byte of a request
  head,          // reading a request head (absolute deadline)
  body,          // reading a request body
  connect,       // opening an upstream connection
  up_write,      // sending the request upstream
  up_head,       // waiting for the response head
  up_body,       // reading the response body
  client_write,  // writing to the client
};

bool upstream_phase(phase p) {
  return p == phase::connect || p == phase::up_write || p == phase::up_head || p == phase::up_body;
}

enum class exchange_result { done, retry_other_endpoint, retry_fresh_connection, failed };

struct session;
using session_ptr = boost::intrusive_ptr<session>;
using list_hook =
    boost::intrusive::list_base_hook<boost::intrusive::link_mode<boost::intrusive::auto_unlink>>;

// What the worker needs of a session to drain or abort it.
struct session_node : list_hook {
  virtual ~session_node() = default;
  virtual void close_if_idle() = 0;
  virtual void abort() = 0;
  virtual void watch_if_waiting() = 0;
};
}  // namespace

struct worker::impl {
  impl(asio::io_context& io_, unsigned index_, std::shared_ptr<const shared_state> shared_,
       std::uint64_t seed)
      : io(io_),
        index(index_),
        shared(std::move(shared_)),
        ups(*shared->cfg, shared->endpoints),
        rng(seed),
        log(shared->cfg->access_log),
        housekeeping(io_) {
    for (const auto& c : shared->cfg->clusters)
      balancers.push_back(routing::make_balancer(c.balancer));
  }

  asio::io_context& io;
  unsigned index;
  std::shared_ptr<const shared_state> shared;
  upstream::worker_upstreams ups;
  std::vector<std::unique_ptr<routing::balancer>> balancers;
  common::random_source rng;
  access_log log;
  boost::intrusive::list<session_node, boost::intrusive::constant_time_size<false>> sessions;
  std::atomic<std::size_t> connection_count{0};
  bool draining = false;
  bool stopped = false;
  asio::steady_timer housekeeping;
};

namespace {

struct session final : session_node {
  session(worker::impl& w_, tcp::socket socket)
      : w(w_),
        sh(*w_.shared),
        cfg(*w_.shared->cfg),
        client(std::move(socket)),
        timer(w_.io),
        buf(initial_buffer),
        req_fields(cfg.limits.max_headers),
        resp_fields(cfg.limits.max_headers) {
    head_out.reserve(1024);
    chunk_headers.reserve(max_chunks_per_write * 20 + 8);
    write_bufs.reserve(max_chunks_per_write * 3 + 2);
    error_code ec;
    auto peer = client.remote_endpoint(ec);
    client_ip = ec ? "unknown" : peer.address().to_string();
    client.set_option(tcp::no_delay(true), ec);
    limits.max_head_bytes = cfg.limits.max_header_bytes;
    limits.max_headers = cfg.limits.max_headers;
  }

  worker::impl& w;
  const shared_state& sh;
  const config::gateway_config& cfg;
  tcp::socket client;
  asio::steady_timer timer;
  int refs = 0;

  // Deadline watchdog: one timer per connection, re-armed lazily (see set_deadline).
  steady::time_point deadline = steady::time_point::max();
  steady::time_point armed = steady::time_point::max();
  phase ph = phase::idle;
  bool expired = false;
  bool closed = false;

  // Client-gone detection while a backend works on the request.
  bool watching = false;
  bool watch_pending = false;
  bool client_gone = false;

  // Client bytes: [begin, end) of buf are read and not yet consumed.
  std::vector<char> buf;
  std::size_t begin = 0, end = 0;
  std::vector<http::header> req_fields, resp_fields;
  http::head_limits limits;
  // Upstream bytes.
  std::vector<char> ubuf;  // empty until the first upstream read
  std::size_t ubegin = 0, uend = 0;
  std::optional<tcp::socket> up;
  std::size_t up_cluster = 0, up_endpoint = 0;
  bool up_reused = false;

  std::string head_out;
  std::string chunk_headers;
  std::vector<asio::const_buffer> write_bufs;
  std::string client_ip;

  // The request being served.
  std::string request_id, method, path, model;
  const config::route_config* route = nullptr;
  metrics::route_metrics* rm = nullptr;
  steady::time_point request_start;
  http::body_kind req_body = http::body_kind::none;
  std::uint64_t body_left = 0;  // content-length bytes not yet consumed from the client
  http::chunked_decoder req_dec;
  bool body_done = true;  // the whole request body has been consumed from the client
  bool client_keep_alive = true;
  int client_minor = 1;
  bool expect_continue = false;
  std::uint64_t bytes_in = 0, bytes_out = 0;
  int status = 0;
  bool response_started = false;
  std::string error_note;  // why the gateway answered or aborted, for the access log
  steady::time_point upstream_start, ttfb_at;
  bool have_upstream_time = false;

  std::string_view view() const { return {buf.data() + begin, end - begin}; }
  bool has_bare_lf(std::size_t from) const {
    auto v = view();
    for (std::size_t i = from; i < v.size(); ++i)
      if (v[i] == '\n' && (i == 0 || v[i - 1] != '\r')) return true;
    return false;
  }
  std::size_t buffered() const { return end - begin; }
  std::string_view uview() const { return {ubuf.data() + ubegin, uend - ubegin}; }

  // ---- deadlines -------------------------------------------------------------------------

  // Moving a deadline later costs nothing (the watchdog re-arms when it wakes); only an earlier
  // deadline than the armed one touches the timer.
  void set_deadline(steady::time_point tp) {
    deadline = tp;
    if (tp < armed) timer.cancel();
  }

  void expire() {
    expired = true;
    deadline = steady::time_point::max();
    error_code ignored;
    if (upstream_phase(ph)) {
      if (up) up->close(ignored);
    } else {
      client.close(ignored);
    }
  }

  // ---- client-gone watch -----------------------------------------------------------------

  // The wait is never cancelled: it stays armed until the client socket turns readable (the
  // next request, or EOF) or closes, and `watching` says whether that still matters. Cancelling
  // a pending wait corrupted later reads on Asio 1.81's io_uring backend (loadtest/RESULTS.md).
  static void start_watch(session_ptr self) {
    session& s = *self;
    s.watching = true;
    if (s.watch_pending || s.closed) return;
    s.watch_pending = true;
    s.client.async_wait(tcp::socket::wait_read, [self](error_code ec) mutable {
      session& s = *self;
      s.watch_pending = false;
      if (ec || !s.watching || s.closed) return;
      char c;
      ssize_t n = ::recv(s.client.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
        // The client closed: stop the backend's work at once by closing its connection.
        s.client_gone = true;
        error_code ignored;
        if (s.up) s.up->close(ignored);
      } else if (n < 0) {
        start_watch(std::move(self));  // spurious wake-up
      }
      // n > 0: a pipelined request is waiting; it is read after this response.
    });
  }

  void stop_watch() { watching = false; }

  // ---- buffers ---------------------------------------------------------------------------

  void make_room(std::size_t want) {
    if (begin == end) begin = end = 0;
    if (buf.size() - end >= want) return;
    if (begin > 0) {
      std::memmove(buf.data(), buf.data() + begin, end - begin);
      end -= begin;
      begin = 0;
    }
    if (buf.size() - end < want) buf.resize(std::max(buf.size() * 2, end + want));
  }

  // Reads more client bytes into buf; returns 0 on EOF, error or deadline.
  asio::awaitable<std::size_t> read_client(std::size_t want) {
    make_room(std::max<std::size_t>(want, 1));
    auto [ec, n] = co_await client.async_read_some(asio::buffer(buf.data() + end, buf.size() - end),
                                                   use_tuple);
    if (ec) co_return 0;
    end += n;
    bytes_in += n;
    co_return n;
  }

  asio::awaitable<std::size_t> read_upstream() {
    if (ubegin == uend) ubegin = uend = 0;
    // Allocated on first use: idle keep-alive clients (and slow ones) do not pay for it.
    if (ubuf.empty()) ubuf.resize(upstream_buffer);
    if (ubuf.size() - uend < 4096) {
      if (ubegin > 0) {
        std::memmove(ubuf.data(), ubuf.data() + ubegin, uend - ubegin);
        uend -= ubegin;
        ubegin = 0;
      }
      if (ubuf.size() - uend < 4096) ubuf.resize(ubuf.size() * 2);
    }
    auto [ec, n] = co_await up->async_read_some(
        asio::buffer(ubuf.data() + uend, ubuf.size() - uend), use_tuple);
    if (ec) co_return 0;
    uend += n;
    co_return n;
  }

  template <class Buffers>
  asio::awaitable<bool> write_client(const Buffers& buffers) {
    ph = phase::client_write;
    set_deadline(steady::now() + cfg.timeouts.idle);
    auto [ec, n] = co_await asio::async_write(client, buffers, use_tuple);
    bytes_out += n;
    if (ec) {
      client_gone = true;
      co_return false;
    }
    co_return true;
  }

  template <class Buffers>
  asio::awaitable<bool> write_upstream(const Buffers& buffers) {
    ph = phase::up_write;
    set_deadline(steady::now() + cfg.timeouts.upstream_idle);
    auto [ec, n] = co_await asio::async_write(*up, buffers, use_tuple);
    co_return !ec;
  }

  // ---- local responses -------------------------------------------------------------------

  // Answers with the gateway's own OpenAI-shaped error. The connection stays open only if the
  // request body has been consumed, so the next bytes are a new request.
  asio::awaitable<bool> respond_error(error_kind kind, std::string_view message,
                                      bool allow_keep_alive = true) {
    bool keep = allow_keep_alive && client_keep_alive && body_done && !w.draining;
    if (request_id.empty()) assign_request_id({});  // rejected before its head was read
    status = common::status_of(kind);
    error_note = message;
    auto body = common::error_body(kind, message);
    http::build_local_response(head_out, status, "application/json", body, keep, request_id,
                               common::retry_after_of(kind));
    response_started = true;
    bool ok = co_await write_client(asio::buffer(head_out));
    if (!keep) client_keep_alive = false;
    co_return ok&& keep;
  }

  // ---- upstream connection ---------------------------------------------------------------

  void close_upstream() {
    if (!up) return;
    error_code ignored;
    up->close(ignored);
    up.reset();
    w.ups.closed(up_cluster, up_endpoint);
  }

  std::size_t pick(std::size_t cluster, std::size_t exclude) {
    auto& cs = w.ups.cluster(cluster);
    auto i = w.balancers[cluster]->pick(cs.stats_view, exclude, w.rng);
    if (i != routing::no_endpoint) return i;
    // Every endpoint ejected: try one anyway rather than fail everything (Envoy's panic mode).
    std::size_t n = cs.endpoints.size();
    if (n == 1) return 0;
    i = w.rng.below(n);
    return i == exclude ? (i + 1) % n : i;
  }

  void begin_in_flight() {
    auto& st = w.ups.cluster(up_cluster).endpoints[up_endpoint]->stats;
    ++st.in_flight;
    st.in_flight_shared.fetch_add(1, std::memory_order_relaxed);
    st.requests_total.fetch_add(1, std::memory_order_relaxed);
    auto& em = sh.metrics->cluster(up_cluster).endpoints[up_endpoint];
    em.requests->Increment();
    em.in_flight->Increment();
  }

  void end_in_flight() {
    auto& st = w.ups.cluster(up_cluster).endpoints[up_endpoint]->stats;
    --st.in_flight;
    st.in_flight_shared.fetch_sub(1, std::memory_order_relaxed);
    sh.metrics->cluster(up_cluster).endpoints[up_endpoint].in_flight->Decrement();
  }

  void count_upstream_error(metrics::upstream_error e) {
    sh.metrics->cluster(up_cluster).endpoints[up_endpoint].errors[static_cast<int>(e)]->Increment();
  }

  // ---- request body ----------------------------------------------------------------------

  // Reads the start of the body (without consuming it) until the JSON "model" is found or the
  // peek cap is reached; the bytes stay in buf and are forwarded unchanged.
  asio::awaitable<bool> peek_model(std::size_t head_len) {
    model.clear();
    std::size_t cap = cfg.limits.model_peek_bytes;
    // No co_await inside && or ||: GCC 12 miscompiles it (the frame resumes into a trap).
    if (expect_continue) {
      bool sent = co_await send_continue();
      if (!sent) co_return false;
    }
    ph = phase::body;
    set_deadline(steady::now() + cfg.timeouts.body);
    while (true) {
      std::string_view body = view().substr(head_len);
      std::string_view json;
      bool complete = false;
      if (req_body == http::body_kind::content_length) {
        complete = body.size() >= body_left;
        json = body.substr(0, std::min<std::uint64_t>(body_left, cap));
        complete = complete || json.size() >= cap;
      } else {
        // Chunked: decode a private copy of the start of the body.
        http::chunked_decoder dec;
        model.clear();
        std::string_view rest = body;
        while (!rest.empty() && !dec.done() && !dec.failed() && model.size() < cap) {
          auto st = dec.decode(rest);
          model.append(st.data.substr(0, cap - model.size()));
          rest.remove_prefix(st.consumed);
        }
        complete = dec.done() || dec.failed() || model.size() >= cap;
        json = model;
      }
      if (auto found = routing::find_json_model(json)) {
        model = std::string(*found);
        co_return true;
      }
      if (complete) {
        model.clear();
        co_return true;  // no model in the part we may read: match as "no model"
      }
      auto n = co_await read_client(4096);
      if (n == 0) co_return false;
      set_deadline(steady::now() + cfg.timeouts.body);
    }
  }

  asio::awaitable<bool> send_continue() {
    expect_continue = false;
    static constexpr std::string_view cont = "HTTP/1.1 100 Continue\r\n\r\n";
    co_return co_await write_client(asio::buffer(cont));
  }

  // Reads more request body from the client under the body deadline; on failure records whether
  // the client left or timed out.
  asio::awaitable<bool> read_body_bytes() {
    ph = phase::body;
    set_deadline(steady::now() + cfg.timeouts.body);
    std::size_t n = co_await read_client(16 * 1024);
    if (n != 0) co_return true;
    client_gone = !expired;
    if (expired)
      error_note = "request body timeout";
    else
      error_note = "client closed during request body";
    co_return false;
  }

  // Streams the rest of the request body to the backend, re-framed. Returns false on failure
  // (after setting error_note); client_gone tells whether the client left.
  asio::awaitable<bool> stream_request_body() {
    if (req_body == http::body_kind::content_length) {
      while (body_left > 0) {
        if (buffered() == 0) {
          bool got = co_await read_body_bytes();
          if (!got) co_return false;
        }
        std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(buffered(), body_left));
        if (!co_await write_upstream(asio::buffer(buf.data() + begin, n))) {
          error_note = "upstream write failed";
          co_return false;
        }
        begin += n;
        body_left -= n;
      }
      body_done = true;
      co_return true;
    }
    // chunked
    while (!req_dec.done()) {
      if (buffered() == 0) {
        bool got = co_await read_body_bytes();
        if (!got) co_return false;
      }
      chunk_headers.clear();
      write_bufs.clear();
      std::size_t spans = 0;
      // Offsets into chunk_headers are taken before building buffers: it must not reallocate.
      std::array<std::pair<std::size_t, std::size_t>, max_chunks_per_write> hdr{};
      std::array<std::string_view, max_chunks_per_write> data{};
      std::size_t consumed = 0;
      while (spans < max_chunks_per_write && consumed < buffered() && !req_dec.done()) {
        auto st = req_dec.decode(view().substr(consumed));
        consumed += st.consumed;
        if (req_dec.failed()) {
          error_note = req_dec.error();
          co_return false;
        }
        if (!st.data.empty()) {
          std::size_t at = chunk_headers.size();
          http::append_chunk_header(chunk_headers, st.data.size());
          hdr[spans] = {at, chunk_headers.size() - at};
          data[spans] = st.data;
          ++spans;
        }
        if (st.consumed == 0) break;
      }
      if (req_dec.payload_bytes() > cfg.limits.max_body_bytes) {
        error_note = "request body exceeds the size limit";
        co_return false;
      }
      for (std::size_t i = 0; i < spans; ++i) {
        write_bufs.push_back(asio::buffer(chunk_headers.data() + hdr[i].first, hdr[i].second));
        write_bufs.push_back(asio::buffer(data[i]));
        write_bufs.push_back(asio::buffer(http::chunk_crlf));
      }
      if (req_dec.done()) write_bufs.push_back(asio::buffer(http::last_chunk));
      if (!write_bufs.empty()) {
        bool written = co_await write_upstream(write_bufs);
        if (!written) {
          error_note = "upstream write failed";
          co_return false;
        }
      }
      begin += consumed;
    }
    body_done = true;
    co_return true;
  }

  // ---- response body ---------------------------------------------------------------------

  // Decodes the chunked bytes in ubuf into chunk frames for the client (or raw bytes when the
  // client gets a close-delimited body). Appends to write_bufs; views stay valid until the next
  // upstream read.
  bool frame_chunked_response(http::chunked_decoder& dec, bool client_chunked) {
    chunk_headers.clear();
    std::array<std::pair<std::size_t, std::size_t>, max_chunks_per_write> hdr{};
    std::array<std::string_view, max_chunks_per_write> data{};
    std::size_t spans = 0;
    while (spans < max_chunks_per_write && ubegin < uend && !dec.done()) {
      auto st = dec.decode(uview());
      ubegin += st.consumed;
      if (dec.failed()) return false;
      if (!st.data.empty()) {
        std::size_t at = chunk_headers.size();
        if (client_chunked) http::append_chunk_header(chunk_headers, st.data.size());
        hdr[spans] = {at, chunk_headers.size() - at};
        data[spans] = st.data;
        ++spans;
      }
      if (st.consumed == 0) break;
    }
    for (std::size_t i = 0; i < spans; ++i) {
      if (client_chunked)
        write_bufs.push_back(asio::buffer(chunk_headers.data() + hdr[i].first, hdr[i].second));
      write_bufs.push_back(asio::buffer(data[i]));
      if (client_chunked) write_bufs.push_back(asio::buffer(http::chunk_crlf));
    }
    if (dec.done() && client_chunked) write_bufs.push_back(asio::buffer(http::last_chunk));
    return true;
  }

  // ---- one exchange with one endpoint ----------------------------------------------------

  asio::awaitable<exchange_result> exchange(std::size_t cluster, std::size_t endpoint,
                                            bool may_reuse, bool last_try) {
    auto& cm = sh.metrics->cluster(cluster);
    const auto& info = *w.ups.cluster(cluster).endpoints[endpoint]->info;
    up_cluster = cluster;
    up_endpoint = endpoint;
    up_reused = false;
    auto now = steady::now();
    if (may_reuse) {
      if (auto sock = w.ups.take_idle(cluster, endpoint, now)) {
        up.emplace(std::move(*sock));
        up_reused = true;
        cm.connections_reused->Increment();
      }
    }
    if (!up) {
      if (!w.ups.may_open(cluster, endpoint)) {
        std::string msg = common::cat("connection limit reached for endpoint ", info.address);
        co_await respond_error(error_kind::overloaded, msg);
        co_return exchange_result::failed;
      }
      w.ups.opened(cluster, endpoint);
      up.emplace(w.io);
      ph = phase::connect;
      expired = false;
      set_deadline(now + cfg.timeouts.upstream_connect);
      auto [ec] = co_await up->async_connect(info.resolved, use_tuple);
      if (ec || expired) {
        bool timed_out = expired;
        expired = false;
        close_upstream();
        w.ups.record_connect_failure(cluster, endpoint, steady::now());
        count_upstream_error(timed_out ? metrics::upstream_error::timeout
                                       : metrics::upstream_error::connect);
        if (timed_out)
          common::log(common::log_level::warn, "proxy", "connect to ", info.address, " timed out");
        else
          common::log(common::log_level::warn, "proxy", "connect to ", info.address,
                      " failed: ", ec.message());
        if (!last_try) co_return exchange_result::retry_other_endpoint;
        // Messages are built outside co_await: GCC 12 double-destroys temporaries of a
        // conditional expression inside a co_await operand.
        std::string msg;
        if (timed_out)
          msg = common::cat("upstream ", info.address, " did not accept the connection in time");
        else
          msg = common::cat("upstream ", info.address, " refused the connection");
        co_await respond_error(
            timed_out ? error_kind::upstream_timeout : error_kind::upstream_unavailable, msg);
        co_return exchange_result::failed;
      }
      error_code ignored;
      up->set_option(tcp::no_delay(true), ignored);
      cm.connect_duration->Observe(seconds_between(now, steady::now()));
      cm.connections_opened->Increment();
      w.ups.record_success(cluster, endpoint);
    }

    begin_in_flight();
    auto result = co_await forward(cluster, endpoint);
    end_in_flight();
    co_return result;
  }

  asio::awaitable<exchange_result> forward(std::size_t cluster, std::size_t endpoint) {
    auto& cm = sh.metrics->cluster(cluster);
    const auto& info = *w.ups.cluster(cluster).endpoints[endpoint]->info;
    expired = false;
    upstream_start = steady::now();
    have_upstream_time = true;
    // A body already complete in buf is sent with the head and consumed only once a response
    // head arrives, so a stale pooled connection can be retried with the same bytes.
    bool replayable = req_body == http::body_kind::none ||
                      (req_body == http::body_kind::content_length && buffered() >= body_left);
    bool sent_ok;
    if (replayable) {
      std::size_t n = static_cast<std::size_t>(body_left);
      std::array<asio::const_buffer, 2> bufs{asio::buffer(head_out),
                                             asio::buffer(buf.data() + begin, n)};
      sent_ok = co_await write_upstream(bufs);
    } else {
      bool continued = true;
      if (expect_continue) continued = co_await send_continue();
      if (!continued) {
        close_upstream();
        error_note = "client closed before sending the body";
        co_return exchange_result::failed;
      }
      std::size_t n = req_body == http::body_kind::content_length
                          ? static_cast<std::size_t>(std::min<std::uint64_t>(buffered(), body_left))
                          : 0;
      std::array<asio::const_buffer, 2> bufs{asio::buffer(head_out),
                                             asio::buffer(buf.data() + begin, n)};
      sent_ok = co_await write_upstream(bufs);
      if (sent_ok) {
        begin += n;
        body_left -= n;
        sent_ok = co_await stream_request_body();
        if (!sent_ok) {
          if (client_gone) {
            close_upstream();
            rm->cancelled_request->Increment();
            co_return exchange_result::failed;
          }
          if (!body_done && error_note != "upstream write failed") {
            // The client's body was bad (framing, size or timeout): nothing more goes upstream.
            close_upstream();
            bool too_large = req_dec.payload_bytes() > cfg.limits.max_body_bytes;
            if (too_large)
              sh.metrics->rejected(metrics::reject_reason::body_too_large).Increment();
            else if (error_note == "request body timeout")
              sh.metrics->rejected(metrics::reject_reason::body_timeout).Increment();
            else
              sh.metrics->rejected(metrics::reject_reason::bad_request).Increment();
            if (error_note == "request body timeout") {
              co_await respond_error(error_kind::request_timeout, error_note, false);
            } else {
              std::string msg = common::cat("invalid request body: ", error_note);
              auto kind = too_large ? error_kind::payload_too_large : error_kind::bad_request;
              co_await respond_error(kind, msg, false);
            }
            co_return exchange_result::failed;
          }
        }
      }
    }
    if (!sent_ok && up_reused && replayable && !client_gone) {
      close_upstream();
      co_return exchange_result::retry_fresh_connection;
    }
    if (!sent_ok && !client_gone) {
      // The backend may have answered early and closed; try to read what it said.
      error_note = "upstream closed while receiving the request";
    }

    // Response head. The client-gone watch is armed by the worker's housekeeping tick for
    // requests still waiting, so fast exchanges pay no extra epoll_ctl for it.
    ph = phase::up_head;
    set_deadline(upstream_start + cfg.timeouts.upstream_response);
    ubegin = uend = 0;
    http::response_head resp;
    std::size_t head_len = 0;
    while (true) {
      std::size_t scanned = uend - ubegin;
      head_len = http::find_head_end(uview());
      while (head_len == 0) {
        if (uend - ubegin > cfg.limits.max_header_bytes) break;
        if (co_await read_upstream() == 0) break;
        head_len = http::find_head_end(uview(), scanned);
        scanned = uend - ubegin;
      }
      if (head_len == 0) {
        stop_watch();
        bool got_nothing = uend == 0;
        close_upstream();
        if (client_gone) {
          rm->cancelled_request->Increment();
          error_note = "client went away while waiting for the response";
          co_return exchange_result::failed;
        }
        if (expired) {
          count_upstream_error(metrics::upstream_error::timeout);
          std::string msg = common::cat("upstream ", info.address, " did not respond in time");
          co_await respond_error(error_kind::upstream_timeout, msg);
          co_return exchange_result::failed;
        }
        if (got_nothing && up_reused && replayable)
          co_return exchange_result::retry_fresh_connection;
        count_upstream_error(got_nothing ? metrics::upstream_error::reset
                                         : metrics::upstream_error::protocol);
        std::string msg;
        if (got_nothing)
          msg = common::cat("upstream ", info.address, " closed the connection without a response");
        else
          msg = common::cat("upstream ", info.address,
                            " sent an oversized or incomplete response head");
        co_await respond_error(error_kind::upstream_unavailable, msg);
        co_return exchange_result::failed;
      }
      http::parse_error perr{};
      auto st = http::parse_response(uview(), limits, resp_fields, method, resp, perr);
      if (st != http::parse_status::complete) {
        stop_watch();
        close_upstream();
        count_upstream_error(metrics::upstream_error::protocol);
        std::string msg = common::cat("upstream ", info.address,
                                      " sent a malformed response: ", http::describe(perr));
        co_await respond_error(error_kind::upstream_unavailable, msg);
        co_return exchange_result::failed;
      }
      if (resp.status >= 200) break;
      // Interim 1xx (100 Continue was answered by us already): not forwarded.
      ubegin += head_len;
    }
    if (replayable) {
      begin += static_cast<std::size_t>(body_left);
      body_left = 0;
      body_done = true;
    }
    bool request_complete = sent_ok && body_done;
    cm.first_byte->Observe(seconds_between(upstream_start, steady::now()));
    status = resp.status;

    // Response head to the client, re-framed.
    bool keep = client_keep_alive && request_complete && !w.draining;
    http::out_framing framing = http::out_framing::none;
    std::uint64_t cl = 0;
    bool client_chunked = false;
    switch (resp.body) {
      case http::body_kind::none:
        break;
      case http::body_kind::content_length:
        framing = http::out_framing::content_length;
        cl = resp.content_length;
        break;
      case http::body_kind::chunked:
      case http::body_kind::until_close:
        client_chunked = client_minor == 1;
        framing = client_chunked ? http::out_framing::chunked : http::out_framing::close_delimited;
        if (!client_chunked) keep = false;
        break;
    }
    http::build_downstream_response(head_out, resp, request_id, framing, cl, keep, client_minor);
    ubegin += head_len;
    response_started = true;
    ttfb_at = steady::now();

    bool upstream_reusable = resp.keep_alive && request_complete;
    bool ok = true;
    write_bufs.clear();
    write_bufs.push_back(asio::buffer(head_out));
    if (resp.body == http::body_kind::none) {
      if (uend > ubegin) upstream_reusable = false;  // bytes after a bodiless response
      ok = co_await write_client(write_bufs);
    } else if (resp.body == http::body_kind::content_length) {
      std::uint64_t left = cl;
      auto take = [&]() {
        std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(uend - ubegin, left));
        if (n) write_bufs.push_back(asio::buffer(ubuf.data() + ubegin, n));
        ubegin += n;
        left -= n;
      };
      take();
      ok = co_await write_client(write_bufs);
      while (ok && left > 0) {
        ph = phase::up_body;
        set_deadline(steady::now() + cfg.timeouts.upstream_idle);
        if (co_await read_upstream() == 0) {
          ok = false;
          break;
        }
        write_bufs.clear();
        take();
        ok = co_await write_client(write_bufs);
      }
      if (uend > ubegin) upstream_reusable = false;  // the backend sent more than it announced
    } else {
      http::chunked_decoder dec;
      bool chunked_in = resp.body == http::body_kind::chunked;
      bool finished = false;
      while (ok) {
        if (chunked_in) {
          if (!frame_chunked_response(dec, client_chunked)) {
            ok = false;
            break;
          }
          finished = dec.done();
        } else if (uend > ubegin) {
          chunk_headers.clear();
          if (client_chunked) http::append_chunk_header(chunk_headers, uend - ubegin);
          if (client_chunked) write_bufs.push_back(asio::buffer(chunk_headers));
          write_bufs.push_back(asio::buffer(ubuf.data() + ubegin, uend - ubegin));
          if (client_chunked) write_bufs.push_back(asio::buffer(http::chunk_crlf));
          ubegin = uend;
        }
        if (!write_bufs.empty()) ok = co_await write_client(write_bufs);
        write_bufs.clear();
        if (!ok || finished) break;
        ph = phase::up_body;
        set_deadline(steady::now() + cfg.timeouts.upstream_idle);
        if (co_await read_upstream() == 0) {
          if (!chunked_in && !expired && !client_gone) {
            // Close-delimited body ended normally.
            if (client_chunked) {
              write_bufs.push_back(asio::buffer(http::last_chunk));
              ok = co_await write_client(write_bufs);
              write_bufs.clear();
            }
            finished = true;
            upstream_reusable = false;
            break;
          }
          ok = false;
          break;
        }
      }
      if (chunked_in && uend > ubegin) upstream_reusable = false;
      if (!chunked_in) upstream_reusable = false;
      ok = ok && finished;
    }
    stop_watch();

    if (!ok) {
      close_upstream();
      client_keep_alive = false;
      if (client_gone) {
        rm->cancelled_response->Increment();
        error_note = "client went away during the response";
      } else {
        count_upstream_error(expired ? metrics::upstream_error::timeout
                                     : metrics::upstream_error::reset);
        if (expired)
          error_note = "upstream stalled during the response";
        else
          error_note = "upstream failed during the response";
      }
      co_return exchange_result::failed;
    }
    if (upstream_reusable) {
      w.ups.release(cluster, endpoint, std::move(*up), steady::now());
      up.reset();
    } else {
      close_upstream();
    }
    if (!keep) client_keep_alive = false;
    co_return exchange_result::done;
  }

  // ---- the request loop ------------------------------------------------------------------

  void reset_request() {
    route = nullptr;
    rm = &sh.metrics->unrouted();
    req_body = http::body_kind::none;
    body_left = 0;
    body_done = true;
    req_dec.reset();
    bytes_in = buffered();
    bytes_out = 0;
    status = 0;
    response_started = false;
    error_note.clear();
    have_upstream_time = false;
    expect_continue = false;
    request_id.clear();
    method.clear();
    path.clear();
  }

  void assign_request_id(std::string_view from_client) {
    bool usable = !from_client.empty() && from_client.size() <= 128;
    for (unsigned char c : from_client)
      if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\') usable = false;
    if (usable) {
      request_id.assign(from_client);
      return;
    }
    static constexpr char hex[] = "0123456789abcdef";
    request_id.resize(32);
    std::uint64_t a = w.rng.next(), b = w.rng.next();
    for (int i = 0; i < 16; ++i) {
      request_id[i] = hex[(a >> (i * 4)) & 15];
      request_id[16 + i] = hex[(b >> (i * 4)) & 15];
    }
  }

  void finish_request() {
    auto now = steady::now();
    double dur = seconds_between(request_start, now);
    rm->requests[metrics::code_class_index(response_started ? status : 0)]->Increment();
    rm->duration->Observe(dur);
    sh.metrics->bytes_in().Increment(static_cast<double>(bytes_in));
    sh.metrics->bytes_out().Increment(static_cast<double>(bytes_out));
    if (w.log.enabled()) {
      access_record r;
      r.request_id = request_id;
      r.method = method;
      r.path = path;
      r.route = route ? std::string_view(route->name) : std::string_view{};
      r.upstream =
          have_upstream_time
              ? std::string_view(w.ups.cluster(up_cluster).endpoints[up_endpoint]->info->address)
              : std::string_view{};
      r.status = response_started ? status : 0;
      r.bytes_in = bytes_in;
      r.bytes_out = bytes_out;
      r.duration_s = dur;
      r.upstream_s = have_upstream_time ? seconds_between(upstream_start, now) : -1;
      r.ttfb_s =
          response_started && have_upstream_time ? seconds_between(request_start, ttfb_at) : -1;
      r.error = error_note;
      w.log.record(r);
    }
  }

  asio::awaitable<void> reject(error_kind kind, metrics::reject_reason reason,
                               std::string_view message) {
    sh.metrics->rejected(reason).Increment();
    co_await respond_error(kind, message, false);
    finish_request();
  }

  asio::awaitable<void> run() {
    while (!closed) {
      reset_request();
      ph = phase::idle;
      expired = false;
      set_deadline(steady::now() + cfg.timeouts.idle);
      bool started = buffered() > 0;
      request_start = steady::now();
      std::size_t head_len = http::find_head_end(view());
      while (head_len == 0) {
        if (buffered() > cfg.limits.max_header_bytes) {
          co_await reject(error_kind::header_too_large, metrics::reject_reason::head_too_large,
                          "request head exceeds the size limit");
          co_return;
        }
        if (started && ph == phase::idle) {
          // A head that does not arrive whole gets an absolute deadline from its first byte,
          // so a client trickling bytes cannot hold the connection.
          ph = phase::head;
          set_deadline(request_start + cfg.timeouts.header);
        }
        if (w.draining && !started) co_return;
        std::size_t scanned = buffered();
        auto n = co_await read_client(4096);  // the head cap is checked above
        if (n == 0) {
          if (expired && started) {
            sh.metrics->rejected(metrics::reject_reason::header_timeout).Increment();
            common::log(common::log_level::debug, "http", "header timeout from ", client_ip);
          }
          co_return;
        }
        if (!started) {
          started = true;
          request_start = steady::now();
          bytes_in = n;
        }
        head_len = http::find_head_end(view(), scanned);
        // A head terminated by bare LFs never shows CRLF CRLF: refuse it now, not at the deadline.
        if (head_len == 0 && has_bare_lf(scanned)) head_len = buffered();
      }
      ph = phase::head;

      http::request_head req;
      http::parse_error perr{};
      auto st = http::parse_request(view().substr(0, head_len), limits, req_fields, req, perr);
      if (st != http::parse_status::complete) {
        client_keep_alive = false;
        bool size = perr == http::parse_error::head_too_large ||
                    perr == http::parse_error::too_many_headers;
        common::log(common::log_level::debug, "http", "bad request from ", client_ip, ": ",
                    http::describe(perr));
        auto kind = size ? error_kind::header_too_large : error_kind::bad_request;
        auto reason =
            size ? metrics::reject_reason::head_too_large : metrics::reject_reason::bad_request;
        co_await reject(kind, reason, http::describe(perr));
        co_return;
      }
      assign_request_id(req.find("x-request-id"));
      method.assign(req.method);
      path.assign(req.path);
      client_keep_alive = req.keep_alive;
      client_minor = req.version_minor;
      expect_continue = req.expect_continue;
      req_body = req.body;
      body_left = req.body == http::body_kind::content_length ? req.content_length : 0;
      body_done = req.body == http::body_kind::none;

      if (req.body == http::body_kind::content_length &&
          req.content_length > cfg.limits.max_body_bytes) {
        std::string msg = common::cat("request body of ", req.content_length,
                                      " bytes exceeds the limit of ", cfg.limits.max_body_bytes);
        co_await reject(error_kind::payload_too_large, metrics::reject_reason::body_too_large, msg);
        co_return;
      }

      auto m = sh.routes.match(req, std::nullopt);
      if (m.outcome == routing::match_outcome::need_model) {
        if (!co_await peek_model(head_len)) {
          if (!expired) {
            rm->cancelled_request->Increment();
          } else {
            sh.metrics->rejected(metrics::reject_reason::body_timeout).Increment();
          }
          co_return;
        }
        // Reading may have moved the buffer: parse the head again for fresh views.
        http::parse_request(view().substr(0, head_len), limits, req_fields, req, perr);
        m = sh.routes.match(req, std::string_view(model));
      }
      if (m.outcome != routing::match_outcome::matched) {
        sh.metrics->rejected(metrics::reject_reason::no_route).Increment();
        std::string msg = common::cat("no route for ", req.method, ' ', req.path);
        co_await respond_error(error_kind::not_found, msg);
        finish_request();
        if (!client_keep_alive) co_return;
        begin += head_len;
        continue;
      }
      route = &sh.routes.route(m.route);
      rm = &sh.metrics->route(m.route);

      http::out_framing framing = http::out_framing::none;
      if (req.body == http::body_kind::content_length)
        framing = http::out_framing::content_length;
      else if (req.body == http::body_kind::chunked)
        framing = http::out_framing::chunked;
      else if (req.method == "POST" || req.method == "PUT" || req.method == "PATCH")
        framing = http::out_framing::content_length;  // explicit zero-length body
      http::build_upstream_request(head_out, req, {client_ip, "http", request_id}, framing,
                                   req.content_length);
      begin += head_len;

      std::size_t cluster = route->cluster_index;
      std::size_t n_endpoints = w.ups.cluster(cluster).endpoints.size();
      std::size_t exclude = routing::no_endpoint;
      bool fresh_retry_used = false;
      exchange_result r = exchange_result::failed;
      for (int attempt = 0; attempt < 3; ++attempt) {
        std::size_t ep =
            (r == exchange_result::retry_fresh_connection) ? up_endpoint : pick(cluster, exclude);
        bool may_reuse = r != exchange_result::retry_fresh_connection;
        bool last_try = n_endpoints == 1 || exclude != routing::no_endpoint;
        r = co_await exchange(cluster, ep, may_reuse, last_try);
        if (r == exchange_result::retry_other_endpoint) {
          exclude = ep;
          continue;
        }
        if (r == exchange_result::retry_fresh_connection && !fresh_retry_used) {
          fresh_retry_used = true;
          continue;
        }
        if (r == exchange_result::retry_fresh_connection) {
          co_await respond_error(error_kind::upstream_unavailable,
                                 "upstream closed the connection without a response");
        }
        break;
      }
      finish_request();
      if (r != exchange_result::done || !client_keep_alive || closed) co_return;
    }
  }

  void close_if_idle() override {
    if (ph == phase::idle && buffered() == 0) {
      error_code ignored;
      client.close(ignored);
    }
  }

  void watch_if_waiting() override {
    if ((ph == phase::up_head || ph == phase::up_body) && !watching && !closed)
      start_watch(session_ptr(this));
  }

  void abort() override {
    error_code ignored;
    client.close(ignored);
    if (up) up->close(ignored);
  }

  void finish() {
    closed = true;
    stop_watch();
    timer.cancel();
    close_upstream();
    error_code ignored;
    client.shutdown(tcp::socket::shutdown_send, ignored);
    client.close(ignored);
    if (is_linked()) unlink();
    w.connection_count.fetch_sub(1, std::memory_order_relaxed);
    sh.metrics->active_connections().Decrement();
  }
};

void intrusive_ptr_add_ref(session* s) {
  ++s->refs;
}
void intrusive_ptr_release(session* s) {
  if (--s->refs == 0) delete s;
}

asio::awaitable<void> watchdog(session_ptr s) {
  while (!s->closed) {
    s->armed = s->deadline;
    s->timer.expires_at(s->armed);
    co_await s->timer.async_wait(use_tuple);
    if (s->closed) break;
    if (steady::now() >= s->deadline) s->expire();
  }
  s->armed = steady::time_point::max();
}

asio::awaitable<void> serve_session(session_ptr s) {
  co_await s->run();
  s->finish();
}

asio::awaitable<void> housekeeping(worker::impl* w) {
  int tick = 0;
  while (!w->stopped) {
    w->housekeeping.expires_after(std::chrono::milliseconds(100));
    auto [ec] = co_await w->housekeeping.async_wait(use_tuple);
    if (ec || w->stopped) break;
    w->log.flush();
    auto now = steady::now();
    w->ups.refresh_health(now);
    for (auto& s : w->sessions) s.watch_if_waiting();
    if (++tick % 10 == 0) w->ups.prune(now);
  }
}

}  // namespace

worker::worker(asio::io_context& io, unsigned index, std::shared_ptr<const shared_state> shared,
               std::uint64_t seed)
    : impl_(std::make_unique<impl>(io, index, std::move(shared), seed)) {
  asio::co_spawn(io, housekeeping(impl_.get()), asio::detached);
}

worker::~worker() = default;

void worker::serve(tcp::socket socket) {
  auto& w = *impl_;
  const auto& cfg = *w.shared->cfg;
  w.shared->metrics->accepted_connections().Increment();
  if (w.connection_count.load(std::memory_order_relaxed) >= cfg.limits.max_connections_per_worker ||
      w.draining) {
    // Refuse politely without reading: a short non-blocking send, then close.
    auto kind = w.draining ? error_kind::draining : error_kind::overloaded;
    std::string out;
    http::build_local_response(
        out, common::status_of(kind), "application/json",
        common::error_body(kind, w.draining ? "the gateway is draining" : "too many connections"),
        false, {}, common::retry_after_of(kind));
    ::send(socket.native_handle(), out.data(), out.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    w.shared->metrics->rejected(metrics::reject_reason::overloaded).Increment();
    error_code ignored;
    socket.close(ignored);
    return;
  }
  w.connection_count.fetch_add(1, std::memory_order_relaxed);
  w.shared->metrics->active_connections().Increment();
  session_ptr s(new session(w, std::move(socket)));
  w.sessions.push_back(*s);
  asio::co_spawn(w.io, watchdog(s), asio::detached);
  asio::co_spawn(w.io, serve_session(s), asio::detached);
}

void worker::start_drain() {
  auto& w = *impl_;
  w.draining = true;
  for (auto& s : w.sessions) s.close_if_idle();
  w.ups.close_all_idle();
}

void worker::abort_all() {
  auto& w = *impl_;
  w.stopped = true;
  w.housekeeping.cancel();
  for (auto& s : w.sessions) s.abort();
  w.ups.close_all_idle();
  w.log.flush();
}

std::size_t worker::connections() const {
  return impl_->connection_count.load(std::memory_order_relaxed);
}

upstream::worker_upstreams& worker::upstreams() {
  return impl_->ups;
}
asio::io_context& worker::io() {
  return impl_->io;
}

}  // namespace meridian::proxy
