// Runs the real meridian binary as a child process on ports chosen by the kernel and finds them
// from its log. Killed (SIGKILL) in the destructor if still running.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace test {

class gateway_process {
 public:
  // `yaml` must use 127.0.0.1:0 for its listener; the admin listener is forced to port 0.
  // With block_io_uring the child runs under a seccomp filter that refuses io_uring_setup, as
  // Docker's default profile does.
  explicit gateway_process(const std::string& yaml, std::vector<std::string> args = {},
                           bool block_io_uring = false);
  ~gateway_process();

  std::uint16_t port() const { return port_; }
  std::uint16_t admin_port() const { return admin_port_; }
  pid_t pid() const { return pid_; }
  std::string log();         // stderr so far
  std::string access_log();  // stdout so far
  void signal(int sig);
  // Replaces the config file the gateway was started with (for reloads).
  void rewrite_config(const std::string& yaml);
  // Waits for exit; returns the exit status, or -1 on timeout.
  int wait(int timeout_ms);

 private:
  pid_t pid_ = -1;
  int err_fd_ = -1;
  std::string config_path_, stdout_path_;
  std::uint16_t port_ = 0, admin_port_ = 0;
  std::mutex mu_;
  std::string log_;
  std::thread reader_;
  bool exited_ = false;
  bool signalled_ = false;
};

// A config with one listener on port 0 and one cluster of the given endpoints.
std::string simple_config(const std::vector<std::uint16_t>& backend_ports,
                          const std::string& extra = "");

// The gateway's /metrics text (empty if the admin listener did not answer).
std::string metrics_text(const gateway_process& gw);

}  // namespace test
