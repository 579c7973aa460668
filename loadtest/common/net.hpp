// Asio plumbing shared by the harness's servers and client: io thread pools, per-socket deadline
// watchdogs, read buffers and HTTP response helpers. Include only from the few Asio-heavy .cpp
// files.
#pragma once
#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/experimental/channel.hpp>
#include <charconv>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/http_parser.hpp"

namespace meridian::loadtest {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using steady = std::chrono::steady_clock;
using boost::system::error_code;
inline constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

// "127.0.0.1:9201" or ":9201"; throws at startup on malformed input.
tcp::endpoint parse_endpoint(std::string_view s);
std::string endpoint_string(const tcp::endpoint& ep);

// N single-threaded io_contexts, one thread each; thread-owned state needs no locks.
class io_pool {
 public:
  explicit io_pool(int n);
  ~io_pool();
  asio::io_context& at(std::size_t i) { return *ctxs_[i % ctxs_.size()]; }
  std::size_t size() const { return ctxs_.size(); }
  void start();
  void stop();
  void join();

 private:
  std::vector<std::unique_ptr<asio::io_context>> ctxs_;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards_;
  std::vector<std::thread> threads_;
};

// Opens acceptors for the same address on every context (SO_REUSEPORT lets the kernel spread
// connections); the first bind resolves port 0 and the rest reuse that port.
std::vector<std::shared_ptr<tcp::acceptor>> open_acceptors(io_pool& pool, tcp::endpoint ep);

// A socket plus a watchdog that closes it when the armed deadline passes, so every await on the
// socket is bounded without a timer operation per await.
struct timed_socket : std::enable_shared_from_this<timed_socket> {
  tcp::socket sock;
  asio::steady_timer timer;
  steady::time_point deadline = steady::time_point::max();
  steady::time_point timer_at = steady::time_point::max();
  bool stopped = false;
  bool timed_out = false;

  explicit timed_socket(tcp::socket s) : sock(std::move(s)), timer(sock.get_executor()) {}
  explicit timed_socket(const asio::any_io_executor& ex) : sock(ex), timer(ex) {}

  void arm(steady::duration d) { arm_at(steady::now() + d); }
  void arm_at(steady::time_point t) {
    deadline = t;
    if (t < timer_at) {
      timer_at = t;
      timer.expires_at(t);  // cancels the pending wait; its handler re-waits at the new time
    }
  }
  void start_watch() { watch(shared_from_this()); }
  void stop() {
    stopped = true;
    timer.cancel();
  }
  void close_hard() {
    // Linger 0 turns close() into an RST, which is what "reset" fault injection wants.
    error_code ec;
    sock.set_option(asio::socket_base::linger(true, 0), ec);
    sock.close(ec);
  }

 private:
  static void watch(std::shared_ptr<timed_socket> self) {
    if (self->stopped) return;
    auto at = self->deadline == steady::time_point::max() ? steady::now() + std::chrono::hours(1)
                                                          : self->deadline;
    self->timer_at = at;
    self->timer.expires_at(at);
    self->timer.async_wait([self](error_code) {
      if (self->stopped) return;
      if (steady::now() >= self->deadline) {
        self->timed_out = true;
        error_code ec;
        self->sock.close(ec);
        return;
      }
      watch(self);
    });
  }
};

// Contiguous read buffer with a consumed prefix; grows up to a cap, compacts instead of
// reallocating.
class read_buffer {
 public:
  explicit read_buffer(std::size_t initial = 16 * 1024, std::size_t cap = 8 * 1024 * 1024)
      : data_(initial), cap_(cap) {}
  std::string_view view() const { return {data_.data() + start_, end_ - start_}; }
  std::size_t size() const { return end_ - start_; }
  void consume(std::size_t n) {
    start_ += n;
    if (start_ == end_) start_ = end_ = 0;
  }
  // Returns a writable region of at least min bytes, or an empty buffer when the cap is reached.
  asio::mutable_buffer prepare(std::size_t min = 4096) {
    if (data_.size() - end_ < min && start_ > 0) {
      std::memmove(data_.data(), data_.data() + start_, end_ - start_);
      end_ -= start_;
      start_ = 0;
    }
    if (data_.size() - end_ < min) {
      if (data_.size() >= cap_) return {};
      data_.resize(std::min(cap_, std::max(data_.size() * 2, end_ + min)));
    }
    return asio::buffer(data_.data() + end_, data_.size() - end_);
  }
  void commit(std::size_t n) { end_ += n; }

 private:
  std::vector<char> data_;
  std::size_t start_ = 0, end_ = 0;
  std::size_t cap_;
};

inline void append_uint(std::string& out, std::uint64_t v) {
  char buf[24];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, p);
}

std::string_view reason_phrase(int status);

// Appends a complete response with Content-Length.
void append_response(std::string& out, int status, std::string_view content_type,
                     std::string_view body, std::string_view extra_headers, bool keep_alive);
// Appends a head for a chunked response (the body follows as chunks).
void append_chunked_head(std::string& out, int status, std::string_view content_type,
                         std::string_view extra_headers);
void append_chunk(std::string& out, std::string_view data);
inline void append_last_chunk(std::string& out) {
  out.append("0\r\n\r\n");
}

// Reads one request (head + body) into rb/body with the socket's watchdog armed for `timeout`.
// Returns false on EOF, error, timeout or a malformed/oversized request (after answering 400/413
// when possible).
asio::awaitable<bool> read_request(std::shared_ptr<timed_socket> ts, read_buffer& rb,
                                   request_head& head, std::string& body, std::size_t& head_len,
                                   steady::duration timeout, std::size_t max_body);

}  // namespace meridian::loadtest
