#include "meridian/runtime/control.hpp"

#include <boost/asio/signal_set.hpp>

#include <csignal>

#include "meridian/common/log.hpp"
#include "meridian/runtime/timer.hpp"

namespace meridian::runtime {

namespace asio = boost::asio;
using common::log;
using common::log_level;

struct control::impl {
  impl(drain_times d, drain_hooks h, const common::clock& c)
      : drain(d),
        hooks(std::move(h)),
        clock(c),
        timer(io, c),
        signals(io, SIGTERM, SIGINT, SIGHUP) {}

  void finish() {
    hooks.abort_all();
    timer.expires_after(std::chrono::milliseconds(20));
    timer.async_wait([this](boost::system::error_code) {
      if (stop) stop();
      io.stop();
    });
  }

  void poll() {
    std::size_t open = hooks.open_connections();
    if (open == 0 || clock.now() >= deadline) {
      if (open)
        log(log_level::warn, "runtime", "drain timeout: closing ", open, " connections");
      else
        log(log_level::info, "runtime", "drained");
      finish();
      return;
    }
    timer.expires_after(std::chrono::milliseconds(20));
    timer.async_wait([this](boost::system::error_code ec) {
      if (!ec) poll();
    });
  }

  // Readiness fails; nothing else changes (POST /admin/drain).
  void fail_readiness() {
    if (draining.exchange(true)) return;
    hooks.on_draining(true);
    log(log_level::info, "runtime",
        "drain requested: readiness now fails; requests keep being served and the process keeps "
        "running (SIGTERM or POST /admin/quit stops it)");
  }

  bool restore_readiness() {
    if (stopping.load()) return false;
    if (!draining.exchange(false)) return true;
    hooks.on_draining(false);
    log(log_level::info, "runtime", "undrain requested: readiness passes again");
    return true;
  }

  void begin() {
    if (stopping.exchange(true)) return;
    if (!draining.exchange(true)) hooks.on_draining(true);
    log(log_level::info, "runtime", "draining to stop: readiness now fails; listeners close in ",
        std::chrono::duration<double>(drain.shutdown_delay).count(), "s");
    timer.expires_after(drain.shutdown_delay);
    timer.async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      hooks.stop_accepting();
      hooks.drain_workers();
      deadline = clock.now() + drain.timeout;
      poll();
    });
  }

  void wait_signal() {
    signals.async_wait([this](const boost::system::error_code& ec, int sig) {
      if (ec) return;
      if (sig == SIGHUP) {  // logrotate, systemctl reload: re-read the config, never stop
        log(log_level::info, "runtime", "SIGHUP received: reloading the config");
        if (reload) reload();
        wait_signal();
        return;
      }
      if (stopping.load()) {
        log(log_level::warn, "runtime", "second signal: stopping now");
        finish();
        return;
      }
      log(log_level::info, "runtime", "signal ", sig, " received");
      begin();
      wait_signal();
    });
  }

  drain_times drain;
  drain_hooks hooks;
  const common::clock& clock;
  std::function<void()> stop;
  std::function<void()> reload;
  asio::io_context io{1};
  runtime::timer timer;
  asio::signal_set signals;
  std::atomic<bool> draining{false};  // readiness fails
  std::atomic<bool> stopping{false};  // the stop sequence has begun
  common::time_point deadline = common::time_point::max();
};

control::control(drain_times drain, drain_hooks hooks, const common::clock& clock)
    : impl_(std::make_unique<impl>(drain, std::move(hooks), clock)) {}

control::~control() = default;

asio::io_context& control::io() {
  return impl_->io;
}

void control::begin_drain() {
  impl_->begin();
}

void control::fail_readiness() {
  impl_->fail_readiness();
}

bool control::restore_readiness() {
  return impl_->restore_readiness();
}

bool control::draining() const {
  return impl_->draining.load();
}

const std::atomic<bool>& control::draining_flag() const {
  return impl_->draining;
}

void control::on_stop(std::function<void()> fn) {
  impl_->stop = std::move(fn);
}

void control::on_reload(std::function<void()> fn) {
  impl_->reload = std::move(fn);
}

void control::settle() {
  boost::system::error_code ignored;
  impl_->signals.cancel(ignored);
  impl_->timer.cancel();
  impl_->io.restart();
  impl_->io.run_for(std::chrono::seconds(1));
}

void control::run() {
  ::signal(SIGPIPE, SIG_IGN);
  impl_->wait_signal();
  impl_->io.run();
}

}  // namespace meridian::runtime
