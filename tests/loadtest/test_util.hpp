// Blocking loopback HTTP/1.1 client for tests (POSIX sockets: keeps test compile times low).
#pragma once
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <stdexcept>
#include <string>

#include "common/http_parser.hpp"

namespace meridian::loadtest::test {

struct http_result {
  int status = 0;
  std::string head;
  std::string body;
  bool ok = false;  // complete response received
  double elapsed_ms = 0;
  std::string header(std::string_view name) const {
    std::string_view h = head;
    std::size_t pos = 0;
    while ((pos = h.find('\n', pos)) != std::string_view::npos) {
      ++pos;
      auto eol = h.find('\r', pos);
      auto line = h.substr(pos, eol - pos);
      auto c = line.find(':');
      if (c != std::string_view::npos && iequals(line.substr(0, c), name)) {
        auto v = line.substr(c + 1);
        while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
        return std::string(v);
      }
    }
    return {};
  }
};

class client {
 public:
  explicit client(std::uint16_t port, int timeout_ms = 5000) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
      throw std::runtime_error("connect failed");
  }
  ~client() { close(); }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  bool send_all(std::string_view d) {
    while (!d.empty()) {
      auto n = ::send(fd_, d.data(), d.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      d.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }
  // Reads at most one chunk of bytes (for streaming tests); empty on EOF/timeout.
  std::string read_some() {
    char b[65536];
    auto n = ::recv(fd_, b, sizeof b, 0);
    return n > 0 ? std::string(b, static_cast<std::size_t>(n)) : std::string();
  }
  http_result request(std::string_view method, std::string_view path, std::string_view body = {},
                      std::string_view extra = {}) {
    auto t0 = std::chrono::steady_clock::now();
    std::string req =
        std::string(method) + " " + std::string(path) + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    req += extra;
    if (!body.empty() || method == "POST" || method == "PUT")
      req += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
             "\r\n";
    req += "\r\n";
    req += body;
    http_result r;
    if (!send_all(req)) return r;
    r = read_response(method == "HEAD");
    r.elapsed_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    return r;
  }
  http_result read_response(bool head_only = false) {
    http_result r;
    body_decoder dec;
    bool have_head = false;
    while (true) {
      if (!have_head) {
        response_head h;
        long hl = parse_response_head(buf_, h);
        if (hl < 0) return r;
        if (hl > 0) {
          have_head = true;
          r.status = h.status;
          r.head = buf_.substr(0, static_cast<std::size_t>(hl));
          buf_.erase(0, static_cast<std::size_t>(hl));
          if (head_only || h.status == 204 || h.status == 304)
            dec.reset_length(0);
          else if (h.chunked)
            dec.reset_chunked();
          else if (h.content_length >= 0)
            dec.reset_length(static_cast<std::uint64_t>(h.content_length));
          else
            dec.reset_until_close();
        }
      }
      if (have_head) {
        auto used = dec.feed(buf_, [&](std::string_view d) { r.body.append(d); });
        buf_.erase(0, used);
        if (dec.done()) {
          r.ok = true;
          return r;
        }
        if (dec.failed()) return r;
      }
      char b[65536];
      auto n = ::recv(fd_, b, sizeof b, 0);
      if (n <= 0) {
        if (have_head) {
          dec.finish_on_close();
          r.ok = dec.done();
        }
        return r;
      }
      buf_.append(b, static_cast<std::size_t>(n));
    }
  }
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
  std::string buf_;
};

inline http_result get(std::uint16_t port, std::string_view path) {
  return client(port).request("GET", path);
}
inline http_result post(std::uint16_t port, std::string_view path, std::string_view body) {
  return client(port).request("POST", path, body);
}

}  // namespace meridian::loadtest::test
