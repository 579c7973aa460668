// One load-generator thread's state: its io_context, arrival schedule, keep-alive connections and
// statistics. Touched only by the worker's own thread, except the a_* atomics that the calling
// thread reads for the progress line.
#pragma once
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/ssl.hpp>

#include "common/http_parser.hpp"
#include "common/net.hpp"
#include "load/load.hpp"
#include "load/request_builder.hpp"
#include "load/sse.hpp"

namespace meridian::loadtest::runner {

inline std::uint64_t to_ns(steady::duration d) {
  auto n = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
  return n > 0 ? static_cast<std::uint64_t>(n) : 0;
}

// Fixed-capacity FIFO of intended send times; never allocates after construction.
class job_ring {
 public:
  explicit job_ring(std::size_t cap) : v_(cap) {}
  bool push(steady::time_point t) {
    if (n_ == v_.size()) return false;
    v_[(head_ + n_++) % v_.size()] = t;
    return true;
  }
  steady::time_point pop() {
    auto t = v_[head_];
    head_ = (head_ + 1) % v_.size();
    --n_;
    return t;
  }
  bool empty() const { return n_ == 0; }
  std::size_t size() const { return n_; }

 private:
  std::vector<steady::time_point> v_;
  std::size_t head_ = 0, n_ = 0;
};

class h2_session;

// One keep-alive client connection and its reusable buffers and parsers; driven by one coroutine.
// Over HTTP/2 (h2 set) it is one slot of a shared session instead: its requests become streams.
struct connection {
  explicit connection(asio::io_context& ctx) : wake(ctx) {}
  std::shared_ptr<timed_socket> ts;
  std::unique_ptr<asio::ssl::stream<tcp::socket&>> tls;  // https://: over ts->sock
  bool connected = false;
  bool reused = false;
  read_buffer rb{64 * 1024, 64 << 20};
  std::string req;
  std::string body;  // non-streaming OpenAI responses
  sse_parser sse;
  body_decoder dec;
  asio::steady_timer wake;
  bool idle = false;
  h2_session* h2 = nullptr;
};

// Shared by every worker of a run: the --max-requests budget.
struct shared_state {
  std::atomic<std::uint64_t> issued{0};
};

struct worker {
  worker(const load_config& c, int idx, int n, shared_state* sh, steady::time_point start);
  ~worker();
  worker(const worker&) = delete;
  worker& operator=(const worker&) = delete;

  const load_config& cfg;
  int index;
  shared_state* shared;
  asio::io_context ctx;
  request_builder builder;
  job_ring pending;
  steady::time_point start, end, warm_end, hard_end;
  arrival_schedule schedule;
  asio::steady_timer stopper;
  std::vector<std::unique_ptr<connection>> conns;
  std::vector<std::unique_ptr<h2_session>> sessions;  // --http2: one per connection
  std::vector<connection*> idle;
  bool schedule_done = false;
  bool aborting = false;
  int live_conns = 0;
  std::uint64_t seq = 0;
  tcp::endpoint target;
  request_slo per_request;

  // statistics (this thread only)
  std::uint64_t completed = 0, failed = 0, sent = 0, late = 0, unsent = 0, good = 0,
                warm_skipped = 0;
  std::uint64_t err[8] = {};
  std::map<int, std::uint64_t> statuses;
  std::uint64_t in_tokens = 0, out_tokens = 0, token_events = 0, clumped = 0;
  histogram ttft, tpot, itl, e2el, lag;
  // https://: the client context, the session new connections resume, handshake figures.
  std::unique_ptr<asio::ssl::context> tls;
  SSL_SESSION* session = nullptr;
  histogram handshake;
  std::uint64_t handshakes = 0, resumed = 0, handshake_failures = 0;
  std::string handshake_error;  // the first failure's reason
  std::vector<std::pair<std::string, std::uint64_t>> backends;
  double interval_s = 1;
  std::vector<interval_stats> timeline;
  std::vector<request_record> records;
  steady::time_point last_done{};
  // progress (read by the main thread)
  histogram progress_hist;
  std::atomic<std::uint64_t> a_completed{0}, a_failed{0}, a_inflight{0}, a_p50{0}, a_p99{0};
  std::uint64_t inflight = 0;

  int backend_index(std::string_view name);
  void wake_one();
  void wake_all();
};

struct outcome {
  error_kind error = error_kind::none;
  int status = 0;
  steady::time_point first_token{}, done{};
  std::uint32_t tokens = 0;
  std::uint32_t clumped = 0;
  int backend = -1;
  bool has_usage = false;
};

// Called as a connection's loop ends; the last one cancels the hard-end stopper.
void conn_finished(worker* w);

}  // namespace meridian::loadtest::runner
