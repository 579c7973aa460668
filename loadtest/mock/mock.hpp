// In-process mock backends (LLM engine emulator, object store, delaying TCP relay). Each object
// owns its io threads; start() binds and returns the port, stop() joins. Safe to call control
// methods from any thread.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mock/engine_model.hpp"

namespace meridian::loadtest {

struct llm_options {
  std::string listen = "127.0.0.1:9201";
  std::string grpc_listen;  // KServe v2 / Triton gRPC (h2c) on the same engine; "" = off
  int threads = 1;
  engine_params engine;
  std::string model = "mock-llm";
  std::string name;  // x-mock-backend value; default "llm-<port>"
  int default_max_tokens = 16;
  int max_tokens_cap = 8192;
  int embedding_dim = 16;
  double error_rate = 0;  // fraction of generation requests answered 500
  double spike_rate = 0;  // fraction of requests delayed by spike_ms before queueing
  double spike_ms = 0;
  double header_delay_ms = 0;   // delay before the response head is written
  double health_delay_ms = 0;   // /health answers after a random wait, uniform up to this
  double reset_rate = 0;        // fraction of requests reset (RST) mid-response
  double cut_after = -1;        // every stream reset after this many tokens (< 0: never)
  bool stop_on_abandon = true;  // cancel generation when the client goes away
  std::uint64_t seed = 1;
  double idle_timeout_s = 60;
  double request_timeout_s = 600;
};

class llm_mock {
 public:
  explicit llm_mock(llm_options o);
  ~llm_mock();
  std::uint16_t start();
  // The gRPC front's port once started (0 without --grpc-listen).
  std::uint16_t grpc_port() const;
  void stop();
  // GET /control body; POST /control applies a JSON object (returns false + err on bad input).
  std::string control_json() const;
  bool apply_control(std::string_view json, std::string& err);
  struct impl;

 private:
  std::unique_ptr<impl> impl_;
};

struct storage_options {
  std::string listen = "127.0.0.1:9301";
  int threads = 1;
  std::uint64_t bandwidth = 0;       // bytes/s for response bodies, server-wide, 0 = unlimited
  std::uint64_t conn_bandwidth = 0;  // bytes/s for response bodies, per connection
  std::uint64_t max_object = 256ull << 20;
  std::string name;
  // Read-only objects of any size made up on the fly (no memory per object): key -> size. Byte
  // i of each is a function of (seed, i), so replicas with the same seed hold the same objects
  // and one with another seed holds another version (another ETag).
  std::vector<std::pair<std::string, std::uint64_t>> synthetic;
  std::uint64_t seed = 1;
  // Fault injection on GET bodies: after `fail_after` body bytes of a response, reset the
  // connection or stall (send nothing more); only the first `fail_count` responses (0: all).
  std::uint64_t fail_after = UINT64_MAX;
  bool fail_stall = false;
  std::uint64_t fail_count = 0;
};

class storage_mock {
 public:
  explicit storage_mock(storage_options o);
  ~storage_mock();
  std::uint16_t start();
  void stop();
  struct impl;

 private:
  std::unique_ptr<impl> impl_;
};

struct relay_options {
  std::string listen = "127.0.0.1:9401";
  std::string to = "127.0.0.1:9201";
  std::string control;  // empty = no control listener
  double delay_ms = 0;  // one-way, applied in each direction
  double jitter_ms = 0;
  std::uint64_t bandwidth = 0;  // bytes/s per direction per connection, 0 = unlimited
  std::uint64_t seed = 1;
};

class relay {
 public:
  explicit relay(relay_options o);
  ~relay();
  std::uint16_t start();  // returns the data port
  std::uint16_t control_port() const;
  void stop();
  std::string control_json() const;
  bool apply_control(std::string_view json, std::string& err);
  struct impl;

 private:
  std::unique_ptr<impl> impl_;
};

// TLS in front of a mock (--tls-cert, --tls-key): terminates TLS on `listen` and passes each
// connection's plaintext to the mock on 127.0.0.1:<to_port>.
struct tls_front_options {
  std::string listen;
  std::string cert, key;  // PEM chain and key; the constructor throws when they do not load
  int threads = 1;
};

class tls_front {
 public:
  explicit tls_front(tls_front_options o);
  ~tls_front();
  std::uint16_t start(std::uint16_t to_port);  // returns the TLS port
  void stop();
  struct impl;

 private:
  std::unique_ptr<impl> impl_;
};

// `meridian-mock` entry point (subcommands llm, storage, relay); exposed for tests.
int mock_main(int argc, char** argv);

}  // namespace meridian::loadtest
