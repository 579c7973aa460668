#include "support/mock_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <stdexcept>

#include "support/raw_client.hpp"

namespace test {

mock_process::mock_process(std::vector<std::string> args, const std::string& kind) {
  int pipefd[2];
  ::pipe2(pipefd, O_CLOEXEC);
  std::vector<std::string> argv_s{MERIDIAN_MOCK_PATH, kind, "--listen", "127.0.0.1:0"};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  pid_ = ::fork();
  if (pid_ == 0) {
    ::dup2(pipefd[1], 2);
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(pipefd[1]);
  // The mock prints "meridian-mock KIND listening on port N" once bound.
  std::string log;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  const std::string marker = "listening on port ";
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{pipefd[0], POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char buf[512];
    ssize_t n = ::read(pipefd[0], buf, sizeof buf);
    if (n <= 0) break;
    log.append(buf, static_cast<std::size_t>(n));
    auto at = log.find(marker);
    auto end = at == std::string::npos ? at : log.find('\n', at);
    if (end != std::string::npos) {
      port_ = static_cast<std::uint16_t>(std::stoi(log.substr(at + marker.size())));
      break;
    }
  }
  ::close(pipefd[0]);  // the mock's later log lines go nowhere (writes fail quietly)
  if (port_ == 0) throw std::runtime_error("meridian-mock did not start: " + log);
}

mock_process::~mock_process() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
}

bool mock_process::control(const std::string& json) {
  return http_request(port_, "POST", "/control", json).status == 200;
}

simple_response http_request(std::uint16_t port, const std::string& method, const std::string& path,
                             const std::string& body,
                             const std::vector<std::pair<std::string, std::string>>& headers) {
  simple_response out;
  // Callers run this on their own threads: a refused connection is a status 0, not a throw.
  std::optional<client> conn;
  try {
    conn.emplace(port);
  } catch (const std::exception&) {
    return out;
  }
  auto& c = *conn;
  std::string req = method + " " + path + " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n";
  for (const auto& [name, value] : headers) req += name + ": " + value + "\r\n";
  if (!body.empty() || method == "POST")
    req +=
        "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  req += "\r\n" + body;
  c.send(req);
  auto r = c.read(10000ms);
  if (!r) return out;
  out.status = r->status;
  out.body = r->body;
  if (auto it = r->headers.find("x-mock-backend"); it != r->headers.end()) out.backend = it->second;
  return out;
}

}  // namespace test
