// The control thread: its own io_context, the signals, and the drain sequence (readiness fails at
// once, listeners close after a delay, in-flight work gets a timeout, then everything stops).
// SIGHUP asks for a config reload and never stops the gateway.
// Created and run by the main thread; every method but draining() runs on the control thread.
#pragma once

#include <boost/asio/io_context.hpp>

#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>

#include "meridian/common/clock.hpp"

namespace meridian::runtime {

// How long the stop sequence waits: from readiness failing to the listeners closing, and then for
// in-flight work before everything is closed.
struct drain_times {
  common::duration shutdown_delay = std::chrono::seconds(1);
  common::duration timeout = std::chrono::seconds(30);
};

// What the drain sequence does to the rest of the gateway; each is called on the control thread.
struct drain_hooks {
  std::function<void(bool)> on_draining;  // readiness and metrics: draining now (or no longer)
  std::function<void()> stop_accepting;   // close the listeners
  std::function<void()> drain_workers;    // finish in-flight work, close idle clients
  std::function<std::size_t()> open_connections;  // client connections still open
  std::function<void()> abort_all;                // the drain timed out: close everything
};

class control {
 public:
  // Waits on `clock` (tests: a manual one).
  control(drain_times drain, drain_hooks hooks, const common::clock& clock = common::steady());
  ~control();
  control(const control&) = delete;
  control& operator=(const control&) = delete;

  boost::asio::io_context& io();
  // Starts the stop sequence (SIGTERM, SIGINT, POST /admin/quit): readiness fails, listeners
  // close after drain.shutdown_delay, in-flight work gets drain.timeout; a second call is ignored.
  void begin_drain();
  // Readiness fails and stays failed; requests keep being served and nothing stops (a load
  // balancer takes the gateway out; begin_drain() stops it later). Control thread.
  void fail_readiness();
  // Readiness passes again after fail_readiness() (a mistaken drain); false once the stop
  // sequence has begun, which nothing undoes. Control thread.
  bool restore_readiness();
  // Readable from any thread.
  bool draining() const;
  const std::atomic<bool>& draining_flag() const;
  // Called once everything is closed, just before run() returns (stop the workers).
  void on_stop(std::function<void()> fn);
  // Called on SIGHUP (re-read the config); the gateway keeps running whatever it does.
  void on_reload(std::function<void()> fn);
  // Serves signals and the drain until the gateway stopped. Main thread.
  void run();
  // After run(): lets every operation still parked on the control context complete (they were
  // cancelled), so nothing is left to touch objects that are about to go. Main thread.
  void settle();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace meridian::runtime
