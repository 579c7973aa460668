#include "support/raw_client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <stdexcept>
#include <utility>

namespace test {

int connect_to(std::uint16_t port, const char* from) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (from != nullptr) {
    sockaddr_in s{};
    s.sin_family = AF_INET;
    ::inet_pton(AF_INET, from, &s.sin_addr);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&s), sizeof s) != 0) {
      ::close(fd);
      throw std::runtime_error("bind to the source address failed");
    }
  }
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    throw std::runtime_error("connect failed");
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

void send_all(int fd, const std::string& data) {
  std::size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return;
    off += static_cast<std::size_t>(n);
  }
}

namespace {
int remaining_ms(std::chrono::steady_clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}
// Reads once; returns bytes read, 0 on close/error, -1 on timeout.
ssize_t read_once(int fd, std::string& out, std::chrono::steady_clock::time_point deadline) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, remaining_ms(deadline)) <= 0) return -1;
  char tmp[65536];
  ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
  if (n <= 0) return 0;
  out.append(tmp, static_cast<std::size_t>(n));
  return n;
}
}  // namespace

std::string read_until_close(int fd, std::chrono::milliseconds timeout) {
  std::string out;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (read_once(fd, out, deadline) > 0) {
  }
  return out;
}

bool wait_closed(int fd, std::chrono::milliseconds timeout) {
  std::string ignored;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    ssize_t n = read_once(fd, ignored, deadline);
    if (n == 0) return true;
    if (n < 0) return false;
  }
}

bool raise_fd_limit(std::size_t want) {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return false;
  lim.rlim_cur = lim.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &lim);
  return lim.rlim_cur >= want;
}

std::vector<std::string> burst(std::uint16_t port, int n, const std::string& request,
                               std::chrono::milliseconds timeout) {
  std::vector<int> fds;
  for (int i = 0; i < n; ++i) {
    fds.push_back(connect_to(port));
    send_all(fds.back(), request);
  }
  std::vector<std::string> out;
  auto until = std::chrono::steady_clock::now() + timeout;  // a stuck one costs it once, not each
  for (int fd : fds) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    out.push_back(read_until_close(fd, std::max(left, std::chrono::milliseconds(1))));
    ::close(fd);
  }
  return out;
}

client::client(std::uint16_t port, const char* from) : fd_(connect_to(port, from)) {}
client::~client() {
  close();
}
void client::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

bool client::fill(std::chrono::steady_clock::time_point deadline) {
  return read_once(fd_, buf_, deadline) > 0;
}

std::string client::read_some(std::chrono::milliseconds timeout) {
  if (!buf_.empty()) return std::exchange(buf_, {});
  std::string out;
  read_once(fd_, out, std::chrono::steady_clock::now() + timeout);
  return out;
}

std::optional<response> client::read(std::chrono::milliseconds timeout, bool head) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::size_t end;
  while ((end = buf_.find("\r\n\r\n")) == std::string::npos)
    if (!fill(deadline)) return std::nullopt;
  response r;
  r.raw_head = buf_.substr(0, end + 4);
  buf_.erase(0, end + 4);
  std::size_t line_end = r.raw_head.find("\r\n");
  r.status = std::stoi(r.raw_head.substr(9, 3));
  std::size_t pos = line_end + 2;
  while (pos < r.raw_head.size() - 2) {
    std::size_t e = r.raw_head.find("\r\n", pos);
    std::string line = r.raw_head.substr(pos, e - pos);
    auto colon = line.find(':');
    std::string name = line.substr(0, colon);
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.erase(0, 1);
    r.headers[name] = value;
    pos = e + 2;
  }
  if (head || r.status / 100 == 1 || r.status == 204 || r.status == 304) return r;
  if (r.headers.count("content-length")) {
    std::size_t n = std::stoul(r.headers["content-length"]);
    while (buf_.size() < n)
      if (!fill(deadline)) return std::nullopt;
    r.body = buf_.substr(0, n);
    buf_.erase(0, n);
  } else if (r.headers["transfer-encoding"] == "chunked") {
    while (true) {
      std::size_t le;
      while ((le = buf_.find("\r\n")) == std::string::npos)
        if (!fill(deadline)) return std::nullopt;
      std::size_t size = std::stoul(buf_.substr(0, le), nullptr, 16);
      while (buf_.size() < le + 2 + size + 2)
        if (!fill(deadline)) return std::nullopt;
      r.body += buf_.substr(le + 2, size);
      buf_.erase(0, le + 2 + size + 2);
      if (size == 0) break;
    }
  } else {
    while (fill(deadline)) {
    }
    r.body = std::exchange(buf_, {});
  }
  return r;
}

std::optional<response> get(std::uint16_t port, const std::string& path,
                            const std::string& extra_headers) {
  client c(port);
  c.send("GET " + path + " HTTP/1.1\r\nHost: test\r\n" + extra_headers + "\r\n");
  return c.read();
}

}  // namespace test
