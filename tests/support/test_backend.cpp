#include "support/test_backend.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>

namespace test {
namespace {
bool send_str(int fd, const std::string& s) {
  std::size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<std::size_t>(n);
  }
  return true;
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Waits up to `ms` for the peer to close; true if it did.
bool peer_closed_within(int fd, int ms) {
  pollfd p{fd, POLLIN | POLLRDHUP, 0};
  if (::poll(&p, 1, ms) <= 0) return false;
  char c;
  return ::recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) <= 0;
}

std::string chunk(const std::string& data) {
  char hex[20];
  std::snprintf(hex, sizeof hex, "%zx\r\n", data.size());
  return hex + data + "\r\n";
}
}  // namespace

test_backend::test_backend() : test_backend("127.0.0.1", 0) {}

test_backend::test_backend(const char* address, std::uint16_t port) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  ::inet_pton(AF_INET, address, &a.sin_addr);
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    port_ = 0;
    acceptor_ = std::thread([] {});
    return;
  }
  ::listen(listen_fd_, 128);
  socklen_t len = sizeof a;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
  port_ = ntohs(a.sin_port);
  acceptor_ = std::thread([this] { accept_loop(); });
}

test_backend::~test_backend() {
  stopping_ = true;
  ::shutdown(listen_fd_, SHUT_RDWR);
  ::close(listen_fd_);
  acceptor_.join();
  {
    std::lock_guard lock(mu_);
    for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);
  }
  for (auto& t : threads_) t.join();
}

bool test_backend::eventually(const std::function<bool()>& pred,
                              std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return pred();
}

std::vector<received> test_backend::requests() {
  std::lock_guard lock(mu_);
  return log_;
}

void test_backend::accept_loop() {
  while (!stopping_) {
    int fd = ::accept(listen_fd_, nullptr, nullptr);
    if (fd < 0) return;
    int id = ++connections_;
    std::lock_guard lock(mu_);
    fds_.push_back(fd);
    threads_.emplace_back([this, fd, id] { serve(fd, id); });
  }
}

void test_backend::serve(int fd, int id) {
  std::string buf;
  char tmp[16384];
  bool keep_open = true;
  while (keep_open && !stopping_) {
    std::size_t end;
    while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
      ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
      if (n <= 0) {
        ::close(fd);
        return;
      }
      buf.append(tmp, static_cast<std::size_t>(n));
    }
    received r;
    r.connection = id;
    r.head = buf.substr(0, end + 4);
    buf.erase(0, end + 4);
    std::string lh = lower(r.head);
    auto cl = lh.find("\r\ncontent-length: ");
    if (cl != std::string::npos) {
      std::size_t n = std::stoul(lh.substr(cl + 18));
      while (buf.size() < n) {
        ssize_t got = ::recv(fd, tmp, sizeof tmp, 0);
        if (got <= 0) {
          note_abort(truncated);  // the request ended before its body did
          ::close(fd);
          return;
        }
        buf.append(tmp, static_cast<std::size_t>(got));
      }
      r.body = buf.substr(0, n);
      buf.erase(0, std::min(n, buf.size()));
    } else if (lh.find("\r\ntransfer-encoding: chunked") != std::string::npos) {
      std::size_t e;
      while ((e = buf.find("\r\n0\r\n\r\n")) == std::string::npos &&
             buf.rfind("0\r\n\r\n", 0) != 0) {
        ssize_t got = ::recv(fd, tmp, sizeof tmp, 0);
        if (got <= 0) {
          note_abort(truncated);  // no terminating chunk: the backend must not take it as whole
          ::close(fd);
          return;
        }
        buf.append(tmp, static_cast<std::size_t>(got));
      }
      std::size_t stop = buf.rfind("0\r\n\r\n", 0) == 0 ? 5 : e + 7;
      r.body = buf.substr(0, stop);
      buf.erase(0, stop);
    }
    {
      std::lock_guard lock(mu_);
      log_.push_back(r);
    }
    respond(fd, r, keep_open);
  }
  ::close(fd);
}

void test_backend::respond(int fd, const received& r, bool& keep_open) {
  std::string path = r.head.substr(r.head.find(' ') + 1);
  path = path.substr(0, path.find(' '));
  if (path == "/stream/chat/completions") {
    // An OpenAI chat stream (any path ending so) of the tokens a, b, c, d; with cut_streams set,
    // the backend dies after the first two (between events).
    send_str(fd,
             "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
             "Transfer-Encoding: chunked\r\n\r\n");
    bool cut = cut_streams.load();
    int n = 0;
    for (const char* t : {"a", "b", "c", "d"}) {
      if (cut && n++ == 2) {
        keep_open = false;
        return;
      }
      send_str(fd, chunk(std::string("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"") +
                         t + "\"}}]}\n\n"));
    }
    send_str(fd, chunk("data: [DONE]\n\n") + "0\r\n\r\n");
  } else if (path.rfind("/echo", 0) == 0) {
    std::string body = r.head + r.body;
    send_str(fd,
             "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: X-Backend-Hop\r\n"
             "X-Backend-Hop: 1\r\nContent-Length: " +
                 std::to_string(body.size()) + "\r\n\r\n" + body);
  } else if (path == "/sse" || path == "/slow-sse") {
    bool slow = path == "/slow-sse";
    send_str(fd,
             "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
             "Transfer-Encoding: chunked\r\n\r\n");
    int events = slow ? 100 : 5;
    for (int i = 0; i < events; ++i) {
      std::string ev = "data: {\"i\":" + std::to_string(i) + "}\n\n";
      if (!send_str(fd, chunk(ev)) || (slow && peer_closed_within(fd, 150))) {
        note_abort(aborted_streams);
        keep_open = false;
        return;
      }
      if (!slow) std::this_thread::sleep_for(std::chrono::milliseconds(150));
    }
    send_str(fd, "0\r\n\r\n");
  } else if (path == "/head-hang") {
    // The head at once, then no first token; notices (bounded) when the gateway gives up.
    send_str(fd,
             "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
             "Transfer-Encoding: chunked\r\n\r\n");
    if (peer_closed_within(fd, 10000)) note_abort(aborted_streams);
    keep_open = false;
  } else if (path == "/sse-break" || path == "/sse-break-mid") {
    // Two events, then the backend dies: between events, or inside the third.
    send_str(fd,
             "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
             "Transfer-Encoding: chunked\r\n\r\n" +
                 chunk("data: {\"i\":0}\n\n") + chunk("data: {\"i\":1}\n\n"));
    if (path == "/sse-break-mid") send_str(fd, chunk("data: {\"i\":"));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    keep_open = false;
  } else if (path == "/split" || path == "/split-big") {
    // The head, then a pause, then the body in a write of its own: the gateway holds the head
    // while it waits for the first body byte. /split-big's head is near the gateway's buffer.
    std::string big = path == "/split-big" ? std::string(30000, 'v') : "kept-intact";
    send_str(fd, "HTTP/1.1 200 Fine Thanks\r\nX-Custom-Header: " + big +
                     "\r\nContent-Length: 64\r\n\r\n");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    send_str(fd, std::string(64, 'b'));
  } else if (path == "/bad-chunk" || path == "/bad-chunk-late") {
    // A malformed chunk line where the first chunk should be: at once, or after a pause with
    // half a chunk line sent first.
    send_str(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    if (path == "/bad-chunk-late") {
      send_str(fd, "1");
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    send_str(fd, "zz\r\nhello\r\n0\r\n\r\n");
    keep_open = false;
  } else if (path == "/empty") {
    send_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  } else if (path == "/hang") {
    // Never answers; notices (bounded) when the gateway gives up on it.
    if (peer_closed_within(fd, 10000)) note_abort(aborted_streams);
    keep_open = false;
  } else if (path == "/close" || path == "/die-after-read") {
    keep_open = false;
  } else if (path.rfind("/delay", 0) == 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(700));
    send_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\ndelayed");
  } else if (path == "/until-close") {
    send_str(fd, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it");
    keep_open = false;
  } else if (unavailable) {
    send_str(fd, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy");
  } else if (stalled) {
    send_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");  // and never the body
    if (peer_closed_within(fd, 10000)) note_abort(aborted_streams);
    keep_open = false;
  } else {
    send_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
  }
}

}  // namespace test
