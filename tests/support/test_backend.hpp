// A small threaded HTTP/1.1 backend for integration tests, with scripted behaviours chosen by
// path. It records what it received so tests can check what crossed the gateway. Listens on
// 127.0.0.1:0; one thread per connection; everything stops in the destructor.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace test {

struct received {
  std::string head;  // raw request head as received
  std::string body;  // raw body bytes (chunked left encoded)
  int connection = 0;
};

class test_backend {
 public:
  test_backend();
  // Listening on a given loopback address and port (several backends behind one name and port).
  test_backend(const char* address, std::uint16_t port);
  ~test_backend();
  bool listening() const { return port_ != 0; }
  std::uint16_t port() const { return port_; }
  std::vector<received> requests();
  int connections() const { return connections_.load(); }
  // Set when a streaming or hanging response notices that the gateway closed the connection.
  std::atomic<int> aborted_streams{0};
  // Requests whose connection closed before their body was complete (never recorded).
  std::atomic<int> truncated{0};
  // When the last of either was noticed (steady clock).
  std::atomic<std::chrono::steady_clock::rep> last_abort{0};
  std::chrono::steady_clock::time_point last_abort_at() const {
    return std::chrono::steady_clock::time_point(std::chrono::steady_clock::duration(last_abort));
  }
  // While set, POST /stream/chat/completions streams two of its four tokens and the backend dies.
  std::atomic<bool> cut_streams{false};
  // While set, the default path answers 503 (an overloaded model server).
  std::atomic<bool> unavailable{false};
  // While set, the default path sends its head and no first byte (a stalled model server) until
  // the gateway gives up, which counts as an abort.
  std::atomic<bool> stalled{false};
  // Waits (bounded) for a condition that another thread makes true.
  static bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout);

 private:
  void accept_loop();
  void serve(int fd, int id);
  void respond(int fd, const received& r, bool& keep_open);
  void note_abort(std::atomic<int>& counter) {
    last_abort = std::chrono::steady_clock::now().time_since_epoch().count();
    ++counter;
  }
  int listen_fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> connections_{0};
  std::mutex mu_;
  std::vector<received> log_;
  std::vector<int> fds_;
  std::vector<std::thread> threads_;
  std::thread acceptor_;
};

}  // namespace test
