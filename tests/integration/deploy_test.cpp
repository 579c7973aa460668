// The deploy files as shipped: the config each one gives the gateway passes `meridian --check`
// with the arguments it passes, and the pieces that must fit together do.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {
const std::string source = MERIDIAN_SOURCE_DIR;

std::string quoted(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// `meridian --check` with these arguments, the image's config path replaced by `config`.
int check(std::vector<std::string> args, const std::string& config) {
  for (std::size_t i = 0; i + 1 < args.size(); ++i)
    if (args[i] == "--config") args[i + 1] = config;
  std::string cmd = quoted(std::string(MERIDIAN_BIN_DIR) + "/meridian") + " --check";
  for (const auto& a : args) cmd += " " + quoted(a);
  int st = std::system((cmd + " >/dev/null 2>&1").c_str());
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

bool has_text(const std::string& text, const std::string& needle) {
  return text.find(needle) != std::string::npos;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
}  // namespace

TEST_CASE("the Kubernetes manifests: their ConfigMap passes --check with the Deployment's args") {
  auto docs = YAML::LoadAllFromFile(source + "/docker/kubernetes.yaml");
  YAML::Node config_map, deployment;
  std::vector<std::string> kinds;
  for (const auto& d : docs) {
    kinds.push_back(d["kind"].as<std::string>());
    if (kinds.back() == "ConfigMap") config_map = d;
    if (kinds.back() == "Deployment") deployment = d;
  }
  for (const char* k : {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget",
                        "HorizontalPodAutoscaler", "NetworkPolicy"}) {
    CAPTURE(k);
    CHECK(std::find(kinds.begin(), kinds.end(), k) != kinds.end());
  }
  REQUIRE(config_map);
  REQUIRE(deployment);
  auto spec = deployment["spec"]["template"]["spec"];
  // The volume mounts the ConfigMap the file defines.
  CHECK(spec["volumes"][0]["configMap"]["name"].as<std::string>() ==
        config_map["metadata"]["name"].as<std::string>());
  std::string path = "/tmp/meridian-k8s-config-" + std::to_string(::getpid()) + ".yaml";
  std::ofstream(path) << config_map["data"]["meridian.yaml"].as<std::string>();
  auto container = spec["containers"][0];
  CHECK(check(container["args"].as<std::vector<std::string>>(), path) == 0);
  // The drain fits in the grace period: readiness fails, listeners close after the delay,
  // in-flight work gets the timeout.
  auto cfg = YAML::LoadFile(path);
  auto secs = [](const std::string& d) { return std::stod(d.substr(0, d.size() - 1)); };
  double drain = secs(cfg["drain"]["shutdown_delay"].as<std::string>()) +
                 secs(cfg["drain"]["timeout"].as<std::string>());
  CHECK(spec["terminationGracePeriodSeconds"].as<double>() > drain);
  // A restricted pod: not root, nothing to escalate, a read-only root filesystem.
  CHECK(spec["securityContext"]["runAsNonRoot"].as<bool>());
  CHECK(container["securityContext"]["readOnlyRootFilesystem"].as<bool>());
  CHECK(container["securityContext"]["capabilities"]["drop"][0].as<std::string>() == "ALL");
  CHECK(container["resources"]["limits"]["cpu"]);
  // Starts on a stock cluster: the runtime's default seccomp profile (epoll), nothing the nodes
  // must hold first. The io_uring profile is an opt-in patch naming the shipped profile.
  CHECK(spec["securityContext"]["seccompProfile"]["type"].as<std::string>() == "RuntimeDefault");
  auto patch = YAML::LoadFile(source + "/docker/kubernetes-io_uring-patch.yaml");
  auto seccomp = patch["spec"]["template"]["spec"]["securityContext"]["seccompProfile"];
  CHECK(seccomp["type"].as<std::string>() == "Localhost");
  CHECK(seccomp["localhostProfile"].as<std::string>() == "profiles/meridian-io_uring.json");
  CHECK(has_text(slurp(source + "/docker/README.md"),
                 "/var/lib/kubelet/seccomp/profiles/meridian-io_uring.json"));
  // Readiness covers the cluster the deployment serves.
  auto readiness = container["readinessProbe"]["httpGet"]["path"].as<std::string>();
  CHECK(readiness == "/readyz?cluster=" + cfg["clusters"][0]["name"].as<std::string>());
  // Prometheus reaches the admin port from any namespace; the ServiceMonitor finds a Service
  // with the admin port by the labels and port name it names.
  for (const auto& d : docs) {
    auto kind = d["kind"].as<std::string>();
    if (kind == "NetworkPolicy") {
      bool any_namespace = false;
      for (const auto& rule : d["spec"]["ingress"])
        if (rule["ports"][0]["port"].as<int>() == 9901)
          for (const auto& from : rule["from"])
            any_namespace =
                any_namespace || (from["namespaceSelector"] &&
                                  from["namespaceSelector"].size() == 0 && from["podSelector"]);
      CHECK(any_namespace);
    }
    if (kind == "ServiceMonitor") {
      auto want = d["spec"]["selector"]["matchLabels"];
      auto port = d["spec"]["endpoints"][0]["port"].as<std::string>();
      bool found = false;
      for (const auto& svc : docs) {
        if (svc["kind"].as<std::string>() != "Service" || !svc["metadata"]["labels"]) continue;
        bool labels = true;
        for (const auto& kv : want)
          labels = labels && svc["metadata"]["labels"][kv.first.as<std::string>()] &&
                   svc["metadata"]["labels"][kv.first.as<std::string>()].as<std::string>() ==
                       kv.second.as<std::string>();
        for (const auto& p : svc["spec"]["ports"])
          found = found ||
                  (labels && p["name"].as<std::string>() == port && p["port"].as<int>() == 9901);
      }
      CHECK(found);
    }
    if (kind == "PrometheusRule") {
      // The same groups as docker/alerts.yaml, and the alerts an SRE pages on.
      YAML::Emitter a, b;
      a << d["spec"]["groups"];
      b << YAML::LoadFile(source + "/docker/alerts.yaml")["groups"];
      CHECK(std::string(a.c_str()) == std::string(b.c_str()));
      std::set<std::string> alerts;
      for (const auto& g : d["spec"]["groups"])
        for (const auto& r : g["rules"]) alerts.insert(r["alert"].as<std::string>());
      for (const char* want : {"MeridianHighErrorRate", "MeridianTTFTHigh",
                               "MeridianNoHealthyEndpoint", "MeridianShedding"}) {
        CAPTURE(want);
        CHECK(alerts.count(want) == 1);
      }
    }
  }
  for (const char* k : {"ServiceMonitor", "PrometheusRule"}) {
    CAPTURE(k);
    CHECK(std::find(kinds.begin(), kinds.end(), k) != kinds.end());
  }
  // The model servers are found through a headless Service the config names.
  bool headless = false;
  for (const auto& d : docs) {
    if (d["kind"].as<std::string>() != "Service" || !d["spec"]["clusterIP"]) continue;
    auto name = d["metadata"]["name"].as<std::string>();
    headless = d["spec"]["clusterIP"].as<std::string>() == "None" &&
               cfg["clusters"][0]["endpoints"][0].as<std::string>().starts_with(name + ".");
  }
  CHECK(headless);
  std::remove(path.c_str());
}

TEST_CASE("the seccomp profile allows io_uring and nothing that reaches beyond the container") {
  auto profile = YAML::LoadFile(source + "/docker/seccomp-io_uring.json");  // JSON is YAML
  CHECK(profile["defaultAction"].as<std::string>() == "SCMP_ACT_ERRNO");
  std::set<std::string> allowed;
  for (const auto& rule : profile["syscalls"])
    if (rule["action"].as<std::string>() == "SCMP_ACT_ALLOW" && !rule["args"])
      for (const auto& n : rule["names"]) allowed.insert(n.as<std::string>());
  for (const char* call : {"io_uring_setup", "io_uring_enter", "io_uring_register", "read", "write",
                           "epoll_wait", "accept4", "futex", "mmap", "execve"}) {
    CAPTURE(call);
    CHECK(allowed.count(call) == 1);
  }
  for (const char* call : {"mount", "unshare", "setns", "bpf", "ptrace", "init_module",
                           "kexec_load", "perf_event_open", "keyctl", "clone", "clone3"}) {
    CAPTURE(call);
    CHECK(allowed.count(call) == 0);
  }
  // The compose file runs the gateway under it.
  auto compose = YAML::LoadFile(source + "/docker/compose.yaml");
  auto opts = compose["services"]["meridian"]["security_opt"];
  REQUIRE(opts);
  CHECK(opts[0].as<std::string>() == "seccomp=./seccomp-io_uring.json");
}

TEST_CASE("the compose file: the gateway's arguments pass --check on the image's config") {
  auto compose = YAML::LoadFile(source + "/docker/compose.yaml");
  auto gw = compose["services"]["meridian"];
  REQUIRE(gw);
  // The image puts the example config where the command points.
  CHECK(slurp(source + "/docker/Dockerfile")
            .find("COPY config/meridian.example.yaml /etc/meridian/meridian.yaml") !=
        std::string::npos);
  CHECK(check(gw["command"].as<std::vector<std::string>>(),
              source + "/config/meridian.example.yaml") == 0);
  // The admin port is published on the host's loopback only.
  bool admin_local = false;
  for (const auto& p : gw["ports"]) admin_local |= p.as<std::string>() == "127.0.0.1:9901:9901";
  CHECK(admin_local);
  // The engines check their own port, not the gateway's admin port the image's check uses.
  for (const char* engine : {"engine-edge", "engine-cloud"}) {
    CAPTURE(engine);
    auto test = compose["services"][engine]["healthcheck"]["test"];
    REQUIRE(test);
    CHECK(test[test.size() - 1].as<std::string>().find(":9201/") != std::string::npos);
  }
  // A build tree from the quick start never reaches the image's build context.
  auto ignore = slurp(source + "/.dockerignore");
  CHECK(ignore.find("\nbuild\n") != std::string::npos);
}

TEST_CASE("the alert rules load in Prometheus and name only metrics the gateway exports") {
  auto rules = YAML::LoadFile(source + "/docker/alerts.yaml");
  // promtool (Debian's prometheus package) parses every expression, when it is installed.
  if (std::system("command -v promtool >/dev/null 2>&1") == 0) {
    std::string cmd =
        "promtool check rules " + quoted(source + "/docker/alerts.yaml") + " >/dev/null 2>&1";
    CHECK(std::system(cmd.c_str()) == 0);
  } else {
    MESSAGE("promtool not installed: expressions not parsed");
  }
  // Every meridian_ metric an alert reads is one the gateway's /metrics has.
  std::string exported;
  for (const char* f : {"/src/metrics/metrics.cpp", "/src/metrics/cluster_families.cpp",
                        "/src/metrics/process.cpp"})
    exported += slurp(source + f);
  std::size_t exprs = 0;
  for (const auto& g : rules["groups"])
    for (const auto& r : g["rules"]) {
      auto expr = r["expr"].as<std::string>();
      ++exprs;
      for (std::size_t at = expr.find("meridian_"); at != std::string::npos;
           at = expr.find("meridian_", at + 1)) {
        auto end = expr.find_first_not_of("abcdefghijklmnopqrstuvwxyz_", at);
        auto name = expr.substr(at, end - at);
        for (const char* suffix : {"_bucket"})
          if (name.ends_with(suffix)) name.resize(name.size() - std::string(suffix).size());
        CAPTURE(name);
        CHECK(has_text(exported, "\"" + name + "\""));
        at = end == std::string::npos ? expr.size() : end;
      }
    }
  CHECK(exprs >= 4);
}
