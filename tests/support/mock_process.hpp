// Runs meridian-mock (the harness's model-server emulator) as a child process on a port chosen
// by the kernel, for integration tests whose backends must change behaviour at run time
// (POST /control). Killed in the destructor.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace test {

class mock_process {
 public:
  // `args` follow `meridian-mock KIND --listen 127.0.0.1:0` (llm or storage).
  explicit mock_process(std::vector<std::string> args, const std::string& kind = "llm");
  ~mock_process();
  mock_process(const mock_process&) = delete;
  mock_process& operator=(const mock_process&) = delete;
  std::uint16_t port() const { return port_; }
  // POST /control with a JSON body; true on 200.
  bool control(const std::string& json);

 private:
  pid_t pid_ = -1;
  std::uint16_t port_ = 0;
};

// One HTTP/1.1 exchange on a fresh connection; the response, or status 0 on failure.
struct simple_response {
  int status = 0;
  std::string backend;  // x-mock-backend
  std::string body;
};
simple_response http_request(std::uint16_t port, const std::string& method, const std::string& path,
                             const std::string& body = "",
                             const std::vector<std::pair<std::string, std::string>>& headers = {});

}  // namespace test
