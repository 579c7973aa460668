// The process_* families every Prometheus client library exports (CPU, memory, file
// descriptors, start time), read from /proc at scrape time, and meridian_build_info.
#include <sys/resource.h>
#include <unistd.h>

#include <dirent.h>

#include <fstream>
#include <sstream>
#include <string>

#include "metrics/exposition.hpp"

namespace meridian::metrics::detail {

namespace {
// Fields 14 (utime), 15 (stime), 22 (starttime, clock ticks after boot), 23 (vsize, bytes) and
// 24 (rss, pages) of /proc/self/stat; the command name (field 2) may hold spaces, so fields are
// counted after its closing parenthesis.
struct proc_stat {
  double utime = 0, stime = 0, starttime = 0, vsize = 0, rss = 0;
  bool ok = false;
};

proc_stat read_stat() {
  proc_stat s;
  std::ifstream f("/proc/self/stat");
  std::string line;
  if (!std::getline(f, line)) return s;
  auto close = line.rfind(')');
  if (close == std::string::npos) return s;
  std::istringstream in(line.substr(close + 2));
  std::string field;
  for (int i = 3; in >> field; ++i) {
    if (i == 14) s.utime = std::stod(field);
    if (i == 15) s.stime = std::stod(field);
    if (i == 22) s.starttime = std::stod(field);
    if (i == 23) s.vsize = std::stod(field);
    if (i == 24) {
      s.rss = std::stod(field);
      s.ok = true;
      break;
    }
  }
  return s;
}

double boot_time() {
  std::ifstream f("/proc/stat");
  for (std::string key; f >> key;) {
    if (key == "btime") {
      double t = 0;
      f >> t;
      return t;
    }
    f.ignore(1 << 20, '\n');
  }
  return 0;
}

double open_fds() {
  double n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (auto* e = ::readdir(d))
      if (e->d_name[0] != '.') ++n;
    ::closedir(d);
    --n;  // the descriptor this listing itself holds
  }
  return n;
}
}  // namespace

void collect_process(std::string_view version, std::vector<MetricFamily>& out) {
  if (!version.empty())
    add_value(out.emplace_back(family("meridian_build_info", "The running build of Meridian",
                                      MetricType::Gauge)),
              {{"version", std::string(version)}}, 1);
  auto s = read_stat();
  if (!s.ok) return;
  const double tick = static_cast<double>(::sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(::sysconf(_SC_PAGESIZE));
  add_value(out.emplace_back(family("process_cpu_seconds_total",
                                    "Total user and system CPU time spent in seconds",
                                    MetricType::Counter)),
            {}, (s.utime + s.stime) / tick);
  add_value(out.emplace_back(family("process_resident_memory_bytes",
                                    "Resident memory size in bytes", MetricType::Gauge)),
            {}, s.rss * page);
  add_value(out.emplace_back(family("process_virtual_memory_bytes", "Virtual memory size in bytes",
                                    MetricType::Gauge)),
            {}, s.vsize);
  add_value(out.emplace_back(family("process_start_time_seconds",
                                    "Start time of the process since unix epoch in seconds",
                                    MetricType::Gauge)),
            {}, boot_time() + s.starttime / tick);
  add_value(out.emplace_back(
                family("process_open_fds", "Number of open file descriptors", MetricType::Gauge)),
            {}, open_fds());
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) == 0)
    add_value(out.emplace_back(family("process_max_fds", "Maximum number of open file descriptors",
                                      MetricType::Gauge)),
              {}, static_cast<double>(lim.rlim_cur));
}

}  // namespace meridian::metrics::detail
