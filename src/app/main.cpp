// meridian: flags, config, the io backend choice (possibly exec'ing the other build), run.
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "app/gateway.hpp"
#include "meridian/common/log.hpp"
#include "meridian/config/config.hpp"
#include "meridian/runtime/io_backend.hpp"
#include "meridian/tenants/tenants.hpp"
#include "meridian/tls/client.hpp"
#include "meridian/tls/context.hpp"

namespace {
using namespace meridian;

constexpr const char* usage = R"(usage: meridian --config FILE [options]

  --config FILE        YAML configuration (see config/meridian.example.yaml)
  --check              validate the configuration and exit (0 valid, 1 invalid)
  --version            print the version and exit
  --hash-key           read an API key on stdin and print the line the keys file stores for it
                       ("sha256:<hex>"), e.g.  printf %s "$KEY" | meridian --hash-key
  --set KEY=VALUE      override any config key, e.g. --set clusters[0].balancer=round_robin
  --listen ADDR        same as --set listeners[0].address=ADDR
  --admin ADDR         same as --set admin.address=ADDR
  --workers N|auto     same as --set workers=N
  --io-backend B       same as --set io_backend=B (auto, io_uring, epoll)
  --access-log on|off  same as --set access_log=on|off
  --log-level L        debug, info, warn, error (default info)
)";

runtime::io_request to_request(config::io_backend b) {
  switch (b) {
    case config::io_backend::io_uring:
      return runtime::io_request::io_uring;
    case config::io_backend::epoll:
      return runtime::io_request::epoll;
    case config::io_backend::auto_select:
      return runtime::io_request::auto_select;
  }
  return runtime::io_request::auto_select;
}

std::filesystem::path sibling_for(runtime::io_kind kind) {
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return {};
  return self.parent_path() /
         (kind == runtime::io_kind::io_uring ? "meridian-io_uring" : "meridian");
}

struct flags {
  std::string config_path;
  bool check = false;
  std::vector<std::string> overrides;
};

// Reads the command line; exits on --version, --help and bad flags.
flags parse_flags(int argc, char** argv) {
  flags f;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](const char* flag) -> std::string {
      if (i + 1 >= argc) {
        std::cerr << "meridian: " << flag << " needs a value\n" << usage;
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--config" || a == "-c")
      f.config_path = value("--config");
    else if (a == "--check")
      f.check = true;
    else if (a == "--hash-key") {
      // From stdin, never argv: a command line is visible to every user of the machine.
      std::string key;
      std::getline(std::cin, key);
      while (!key.empty() && (key.back() == '\r' || key.back() == ' ')) key.pop_back();
      if (key.empty()) {
        std::cerr << "meridian: --hash-key reads the key on stdin (got nothing)\n";
        std::exit(2);
      }
      std::cout << tenants::digest_text(tenants::hash_key(key)) << "\n";
      std::exit(0);
    } else if (a == "--version") {
      std::cout << "meridian " << MERIDIAN_VERSION << " ("
                << runtime::to_string(runtime::compiled_io_kind()) << " build)\n";
      std::exit(0);
    } else if (a == "--help" || a == "-h") {
      std::cout << usage;
      std::exit(0);
    } else if (a == "--set")
      f.overrides.push_back(value("--set"));
    else if (a == "--listen")
      f.overrides.push_back("listeners[0].address=" + value("--listen"));
    else if (a == "--admin")
      f.overrides.push_back("admin.address=" + value("--admin"));
    else if (a == "--workers")
      f.overrides.push_back("workers=" + value("--workers"));
    else if (a == "--io-backend")
      f.overrides.push_back("io_backend=" + value("--io-backend"));
    else if (a == "--access-log")
      f.overrides.push_back("access_log=" + value("--access-log"));
    else if (a == "--log-level") {
      common::log_level l;
      auto v = value("--log-level");
      if (!common::parse_log_level(v, l)) {
        std::cerr << "meridian: unknown log level '" << v << "'\n";
        std::exit(2);
      }
      common::set_log_level(l);
    } else {
      std::cerr << "meridian: unknown option '" << a << "'\n" << usage;
      std::exit(2);
    }
  }
  if (f.config_path.empty()) {
    std::cerr << "meridian: --config FILE is required\n" << usage;
    std::exit(2);
  }
  return f;
}
}  // namespace

int main(int argc, char** argv) {
  auto [config_path, check, overrides] = parse_flags(argc, argv);
  std::shared_ptr<const config::gateway_config> cfg;
  try {
    cfg = config::load_file(config_path, overrides);
  } catch (const config::config_error& e) {
    std::cerr << "meridian: invalid configuration: " << e.what() << "\n";
    return 1;
  }
  if (check) {
    // TLS certificates, keys and CAs must load, not only exist: the listeners' and the
    // clusters'.
    try {
      for (const auto& l : cfg->listeners)
        if (l.tls) tls::server_context probe(l.name, *l.tls, nullptr);
      for (const auto& c : cfg->clusters)
        if (c.tls) tls::client_context probe(c.name, *c.tls);
    } catch (const std::exception& e) {
      std::cerr << "meridian: invalid configuration: " << e.what() << "\n";
      return 1;
    }
    std::cout << "meridian: " << config_path << " is valid (" << cfg->listeners.size()
              << " listener(s), " << cfg->clusters.size() << " cluster(s), " << cfg->routes.size()
              << " route(s))\n";
    return 0;
  }

  // The io backend: decided once by whichever build starts first, then handed to the other
  // build through the environment if it has to exec it.
  runtime::io_choice choice;
  if (const char* chosen = std::getenv("MERIDIAN_IO_CHOSEN")) {
    choice.kind =
        std::strcmp(chosen, "io_uring") == 0 ? runtime::io_kind::io_uring : runtime::io_kind::epoll;
    const char* why = std::getenv("MERIDIAN_IO_REASON");
    choice.reason = why ? why : "";
    ::unsetenv("MERIDIAN_IO_CHOSEN");
    ::unsetenv("MERIDIAN_IO_REASON");
  } else {
    choice = runtime::choose_io_backend(to_request(cfg->io), runtime::probe_io_uring);
  }
  if (!choice.ok) {
    common::log(common::log_level::error, "runtime", choice.reason);
    return 1;
  }
  if (choice.kind != runtime::compiled_io_kind()) {
    auto other = sibling_for(choice.kind);
    if (!other.empty() && ::access(other.c_str(), X_OK) == 0) {
      ::setenv("MERIDIAN_IO_CHOSEN", std::string(runtime::to_string(choice.kind)).c_str(), 1);
      ::setenv("MERIDIAN_IO_REASON", choice.reason.c_str(), 1);
      ::execv(other.c_str(), argv);
      common::log(common::log_level::warn, "runtime", "cannot exec ", other.string(), ": ",
                  std::strerror(errno));
    }
    if (cfg->io == config::io_backend::io_uring || choice.kind == runtime::io_kind::epoll) {
      common::log(common::log_level::error, "runtime", "the ", runtime::to_string(choice.kind),
                  " build of meridian is not installed beside ", argv[0]);
      return 1;
    }
    choice.kind = runtime::compiled_io_kind();
    choice.reason += "; io_uring build not installed, using epoll";
  }

  try {
    auto source = [path = config_path, sets = overrides] { return config::load_file(path, sets); };
    return app::run_gateway(cfg, choice.kind, choice.reason, source);
  } catch (const std::exception& e) {
    common::log(common::log_level::error, "runtime", e.what());
    return 1;
  }
}
