// Raw-socket HTTP/1.1 client for tests: sends exact bytes, reads responses independently of the
// gateway's own parser. Blocking, single test thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace test {

using namespace std::chrono_literals;

// `from`: the source address (another loopback address is another client), else the kernel's.
int connect_to(std::uint16_t port, const char* from = nullptr);
void send_all(int fd, const std::string& data);
// Reads until the peer closes or `timeout`; returns what arrived.
std::string read_until_close(int fd, std::chrono::milliseconds timeout);
// True when the peer closes (read returns 0 or reset) within `timeout`.
bool wait_closed(int fd, std::chrono::milliseconds timeout);
// Raises this process's open-file limit to its hard limit (a gateway started afterwards
// inherits it); true when that allows `want` descriptors.
bool raise_fd_limit(std::size_t want);
// Sends `request` on `n` new connections at once, then reads each until the gateway closes it
// (all within `timeout`); returns what each received.
std::vector<std::string> burst(std::uint16_t port, int n, const std::string& request,
                               std::chrono::milliseconds timeout);

struct response {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  std::string raw_head;
};

// A connection that keeps unread bytes between responses (pipelining, keep-alive).
class client {
 public:
  explicit client(std::uint16_t port, const char* from = nullptr);
  ~client();
  void send(const std::string& data) { send_all(fd_, data); }
  // Reads one response (Content-Length, chunked or close-delimited body).
  std::optional<response> read(std::chrono::milliseconds timeout = 5000ms, bool head = false);
  // Reads the next bytes that arrive (for streaming checks); empty on close/timeout.
  std::string read_some(std::chrono::milliseconds timeout);
  bool closed(std::chrono::milliseconds timeout) { return wait_closed(fd_, timeout); }
  int fd() const { return fd_; }
  void close();

 private:
  bool fill(std::chrono::steady_clock::time_point deadline);
  int fd_;
  std::string buf_;
};

// One request on a fresh connection.
std::optional<response> get(std::uint16_t port, const std::string& path,
                            const std::string& extra_headers = "");

// Whether `text` contains `needle`.
inline bool has(const std::string& text, const std::string& needle) {
  return text.find(needle) != std::string::npos;
}

}  // namespace test
