#include "support/gateway_process.hpp"

#include "support/raw_client.hpp"

#include <cstdio>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace test {
namespace {
// Refuses io_uring_setup with EPERM, like Docker's default seccomp profile; allows the rest.
void block_io_uring_setup() {
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog prog{static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
  ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

std::uint16_t port_after(const std::string& text, const std::string& marker) {
  auto at = text.find(marker);
  if (at == std::string::npos) return 0;
  auto line_end = text.find('\n', at);
  auto line = text.substr(at, line_end - at);
  return static_cast<std::uint16_t>(std::stoi(line.substr(line.rfind(':') + 1)));
}
}  // namespace

std::string simple_config(const std::vector<std::uint16_t>& ports, const std::string& extra) {
  std::ostringstream y;
  y << "listeners: [ { name: public, address: 127.0.0.1:0 } ]\n"
    << "workers: 1\n"
    << "clusters:\n  - name: c\n    balancer: round_robin\n    endpoints:\n";
  for (auto p : ports) y << "      - 127.0.0.1:" << p << "\n";
  if (extra.find("routes:") == std::string::npos)
    y << "routes: [ { name: all, match: { path_prefix: / }, cluster: c } ]\n";
  y << extra;
  return y.str();
}

gateway_process::gateway_process(const std::string& yaml, std::vector<std::string> args,
                                 bool block_io_uring) {
  char cfg_tmpl[] = "/tmp/meridian-test-XXXXXX.yaml";
  int cfd = ::mkstemps(cfg_tmpl, 5);
  ::write(cfd, yaml.data(), yaml.size());
  ::close(cfd);
  config_path_ = cfg_tmpl;
  char out_tmpl[] = "/tmp/meridian-test-XXXXXX.out";
  int ofd = ::mkstemps(out_tmpl, 4);
  stdout_path_ = out_tmpl;
  int pipefd[2];
  ::pipe2(pipefd, O_CLOEXEC);
  std::vector<std::string> argv_s{MERIDIAN_BIN_DIR "/meridian", "--config", config_path_, "--admin",
                                  "127.0.0.1:0"};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  pid_ = ::fork();
  if (pid_ == 0) {
    ::dup2(pipefd[1], 2);
    ::dup2(ofd, 1);
    if (block_io_uring) block_io_uring_setup();
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(pipefd[1]);
  ::close(ofd);
  err_fd_ = pipefd[0];
  reader_ = std::thread([this] {
    char buf[4096];
    while (true) {
      ssize_t n = ::read(err_fd_, buf, sizeof buf);
      if (n <= 0) return;
      std::lock_guard lock(mu_);
      log_.append(buf, static_cast<std::size_t>(n));
    }
  });
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    {
      std::lock_guard lock(mu_);
      port_ = port_after(log_, "listener public=");
      admin_port_ = port_after(log_, "admin listener ");
    }
    if (port_ && admin_port_) return;
    int status;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      exited_ = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  // No destructor runs after a constructor throws: stop the child and the reader here.
  if (!exited_) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  reader_.join();
  ::close(err_fd_);
  ::unlink(config_path_.c_str());
  ::unlink(stdout_path_.c_str());
  throw std::runtime_error("gateway did not start: " + log_);
}

gateway_process::~gateway_process() {
  // A gateway that ended on its own, unasked (a crash, a sanitizer report), says so with the end
  // of its log: a test that then fails for "connect failed" is otherwise a riddle.
  int status = 0;
  bool died = !exited_ && !signalled_ && pid_ > 0 && ::waitpid(pid_, &status, WNOHANG) == pid_;
  if (!exited_ && !died && pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  if (reader_.joinable()) reader_.join();
  if (died) {
    auto tail = log_.size() > 6000 ? log_.substr(log_.size() - 6000) : log_;
    std::fprintf(stderr, "\n*** the gateway ended unasked (%s %d); the end of its log:\n%s\n",
                 WIFEXITED(status) ? "exit" : "signal",
                 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), tail.c_str());
  }
  if (err_fd_ >= 0) ::close(err_fd_);
  ::unlink(config_path_.c_str());
  ::unlink(stdout_path_.c_str());
}

std::string gateway_process::log() {
  std::lock_guard lock(mu_);
  return log_;
}

std::string gateway_process::access_log() {
  std::ifstream in(stdout_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void gateway_process::signal(int sig) {
  signalled_ = true;
  ::kill(pid_, sig);
}

int gateway_process::wait(int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    int status;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      exited_ = true;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return -1;
}

void gateway_process::rewrite_config(const std::string& yaml) {
  std::ofstream(config_path_, std::ios::trunc) << yaml;
}

std::string metrics_text(const gateway_process& gw) {
  auto r = get(gw.admin_port(), "/metrics");
  return r ? r->body : std::string();
}

}  // namespace test
