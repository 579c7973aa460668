// Delaying TCP relay (a user-space netem): every chunk read is released toward the other side after
// delay +/- jitter, in order, paced to a bandwidth cap. One io thread owns all relay state.
#include <boost/json.hpp>
#include <deque>
#include <future>
#include <random>
#include <set>

#include "common/net.hpp"
#include "common/parse.hpp"
#include "mock/mock.hpp"

namespace meridian::loadtest {

namespace json = boost::json;

namespace {
struct chunk {
  std::vector<char> data;  // empty = end of stream
  steady::time_point due;
};

// One direction of a relayed connection.
struct pipe_state {
  explicit pipe_state(const asio::any_io_executor& ex) : signal(ex), space(ex) {}
  std::deque<chunk> q;
  std::size_t queued = 0;
  steady::time_point last_due{};
  steady::time_point next_send{};
  asio::steady_timer signal;  // wakes the writer
  asio::steady_timer space;   // wakes the reader when the queue drains
};

struct relay_conn {
  relay_conn(tcp::socket a, const asio::any_io_executor& ex)
      : down(std::make_shared<timed_socket>(std::move(a))),
        up(std::make_shared<timed_socket>(ex)),
        a2b(ex),
        b2a(ex) {}
  std::shared_ptr<timed_socket> down, up;
  pipe_state a2b, b2a;
  bool closed = false;
  int eof_delivered = 0;
  void close(bool hard) {
    if (closed) return;
    closed = true;
    if (hard) {
      down->close_hard();
      up->close_hard();
    } else {
      error_code ec;
      down->sock.close(ec);
      up->sock.close(ec);
    }
    down->stop();
    up->stop();
    a2b.signal.cancel();
    b2a.signal.cancel();
    a2b.space.cancel();
    b2a.space.cancel();
  }
};

constexpr std::size_t max_queued = 4 << 20;
constexpr auto idle_limit = std::chrono::minutes(10);
}  // namespace

struct relay::impl {
  explicit impl(relay_options o) : opt(std::move(o)), pool(1), rng(opt.seed) {}
  relay_options opt;
  io_pool pool;
  std::shared_ptr<tcp::acceptor> acc, ctl;
  tcp::endpoint target;
  std::atomic<bool> stopping{false};
  std::mt19937_64 rng;  // io thread only
  // Settings are read on the io thread per chunk; written by control (posted to the io thread).
  double delay_ms = 0, jitter_ms = 0;
  std::uint64_t bandwidth = 0;
  bool blackhole = false, refuse = false;
  std::set<std::shared_ptr<relay_conn>> conns;
  std::uint64_t accepted = 0, resets = 0, bytes_up = 0, bytes_down = 0;
  std::uint16_t ctl_port = 0;

  steady::duration sample_delay() {
    double d = delay_ms;
    if (jitter_ms > 0) d += std::uniform_real_distribution<double>(-jitter_ms, jitter_ms)(rng);
    if (d < 0) d = 0;
    return std::chrono::microseconds(static_cast<std::int64_t>(d * 1000));
  }
  std::string control_text() const {
    json::object o{{"delay_ms", delay_ms},
                   {"jitter_ms", jitter_ms},
                   {"bandwidth", bandwidth},
                   {"blackhole", blackhole},
                   {"refuse", refuse},
                   {"connections", conns.size()},
                   {"accepted", accepted},
                   {"resets", resets},
                   {"bytes_up", bytes_up},
                   {"bytes_down", bytes_down},
                   {"to", endpoint_string(target)}};
    return json::serialize(o);
  }
  bool apply(std::string_view body, std::string& err) {
    error_code ec;
    json::value v = json::parse(body, ec);
    if (ec || !v.is_object()) {
      err = "control body must be a JSON object";
      return false;
    }
    double nd = delay_ms, nj = jitter_ms;
    std::uint64_t nb = bandwidth;
    bool nbh = blackhole, nrf = refuse, reset = false;
    for (auto& [k, x] : v.as_object()) {
      if ((k == "delay_ms" || k == "jitter_ms") && x.is_number() && x.to_number<double>() >= 0) {
        (k == "delay_ms" ? nd : nj) = x.to_number<double>();
      } else if (k == "bandwidth" && x.is_number() && x.to_number<double>() >= 0) {
        nb = static_cast<std::uint64_t>(x.to_number<double>());
      } else if (k == "bandwidth" && x.is_string()) {
        auto s = parse_size(std::string_view(x.as_string()));
        if (!s) {
          err = "bad bandwidth";
          return false;
        }
        nb = *s;
      } else if ((k == "blackhole" || k == "refuse" || k == "reset") && x.is_bool()) {
        (k == "blackhole" ? nbh : k == "refuse" ? nrf : reset) = x.as_bool();
      } else {
        err = "unknown or bad control key '" + std::string(k) + "'";
        return false;
      }
    }
    delay_ms = nd, jitter_ms = nj, bandwidth = nb, blackhole = nbh, refuse = nrf;
    if (reset) {
      auto all = conns;
      for (auto& c : all) {
        c->close(true);
        ++resets;
      }
      conns.clear();
    }
    return true;
  }
};

namespace {
using rimpl = relay::impl;

asio::awaitable<void> pump_read(rimpl* self, std::shared_ptr<relay_conn> c,
                                std::shared_ptr<timed_socket> from, pipe_state* p, bool upstream) {
  while (!c->closed) {
    while (p->queued > max_queued && !c->closed) {
      p->space.expires_after(std::chrono::seconds(1));
      co_await p->space.async_wait(use_nothrow);
    }
    if (c->closed) break;
    std::vector<char> buf(16 * 1024);
    from->arm(idle_limit);
    auto [ec, n] = co_await from->sock.async_read_some(asio::buffer(buf), use_nothrow);
    if (c->closed) break;
    if (ec && n == 0) {
      // EOF travels through the delay line too so the far side closes in order.
      chunk eof{{}, std::max(p->last_due, steady::now() + self->sample_delay())};
      p->last_due = eof.due;
      p->q.push_back(std::move(eof));
      p->signal.cancel();
      co_return;
    }
    if (self->blackhole) continue;
    buf.resize(n);
    (upstream ? self->bytes_up : self->bytes_down) += n;
    auto due = std::max(p->last_due, steady::now() + self->sample_delay());
    p->last_due = due;
    p->queued += n;
    p->q.push_back(chunk{std::move(buf), due});
    p->signal.cancel();
  }
}

asio::awaitable<void> pump_write(rimpl* self, std::shared_ptr<relay_conn> c,
                                 std::shared_ptr<timed_socket> to, pipe_state* p) {
  asio::steady_timer t(to->sock.get_executor());
  while (!c->closed) {
    if (p->q.empty()) {
      p->signal.expires_after(idle_limit);
      auto [ec] = co_await p->signal.async_wait(use_nothrow);
      if (!ec && p->q.empty()) break;  // idle limit reached
      continue;
    }
    auto& front = p->q.front();
    if (front.due > steady::now()) {
      t.expires_at(front.due);
      co_await t.async_wait(use_nothrow);
      continue;
    }
    if (front.data.empty()) {
      error_code ec;
      to->sock.shutdown(tcp::socket::shutdown_send, ec);
      p->q.pop_front();
      if (++c->eof_delivered == 2) {
        c->close(false);
        self->conns.erase(c);
      }
      co_return;
    }
    if (self->blackhole) {  // data already queued is dropped as well
      p->queued -= front.data.size();
      p->q.pop_front();
      p->space.cancel();
      continue;
    }
    std::size_t n = front.data.size();
    if (self->bandwidth > 0) {
      n = std::min<std::size_t>(n, 4096);
      auto now = steady::now();
      if (p->next_send > now) {
        t.expires_at(p->next_send);
        co_await t.async_wait(use_nothrow);
      }
      p->next_send = std::max(p->next_send, now) +
                     std::chrono::nanoseconds(static_cast<std::int64_t>(
                         static_cast<double>(n) * 1e9 / static_cast<double>(self->bandwidth)));
    }
    to->arm(std::chrono::seconds(60));
    auto [ec, w] =
        co_await asio::async_write(to->sock, asio::buffer(front.data.data(), n), use_nothrow);
    if (ec || c->closed) break;
    if (n == front.data.size()) {
      p->queued -= n;
      p->q.pop_front();
      p->space.cancel();
    } else {
      front.data.erase(front.data.begin(), front.data.begin() + static_cast<std::ptrdiff_t>(n));
      p->queued -= n;
    }
  }
  c->close(false);
  self->conns.erase(c);
}

asio::awaitable<void> relay_session(rimpl* self, std::shared_ptr<relay_conn> c) {
  c->down->start_watch();
  c->up->start_watch();
  error_code sec;
  c->down->sock.set_option(tcp::no_delay(true), sec);
  c->up->arm(std::chrono::seconds(10));
  auto [ec] = co_await c->up->sock.async_connect(self->target, use_nothrow);
  if (ec || c->closed) {
    c->close(true);
    self->conns.erase(c);
    co_return;
  }
  c->up->sock.set_option(tcp::no_delay(true), sec);
  auto ex = c->down->sock.get_executor();
  asio::co_spawn(ex, pump_read(self, c, c->down, &c->a2b, true), asio::detached);
  asio::co_spawn(ex, pump_write(self, c, c->up, &c->a2b), asio::detached);
  asio::co_spawn(ex, pump_read(self, c, c->up, &c->b2a, false), asio::detached);
  asio::co_spawn(ex, pump_write(self, c, c->down, &c->b2a), asio::detached);
}

asio::awaitable<void> relay_accept(rimpl* self) {
  while (!self->stopping.load()) {
    auto [ec, sock] = co_await self->acc->async_accept(use_nothrow);
    if (ec) {
      if (ec == asio::error::operation_aborted || !self->acc->is_open()) co_return;
      continue;
    }
    ++self->accepted;
    if (self->refuse) {
      error_code e2;
      sock.set_option(asio::socket_base::linger(true, 0), e2);
      sock.close(e2);
      continue;
    }
    auto c = std::make_shared<relay_conn>(std::move(sock), self->acc->get_executor());
    self->conns.insert(c);
    asio::co_spawn(self->acc->get_executor(), relay_session(self, c), asio::detached);
  }
}

asio::awaitable<void> control_conn(rimpl* self, std::shared_ptr<timed_socket> ts) {
  ts->start_watch();
  read_buffer rb;
  request_head head;
  std::string body, out;
  while (true) {
    std::size_t hl = 0;
    const bool got =
        co_await read_request(ts, rb, head, body, hl, std::chrono::seconds(30), 1 << 20);
    if (!got) break;
    const bool keep = head.keep_alive;
    std::string_view target = head.target.substr(0, head.target.find('?'));
    out.clear();
    std::string err;
    if (target == "/control" && head.method == "POST") {
      if (self->apply(body, err))
        append_response(out, 200, "application/json", self->control_text(), {}, keep);
      else
        append_response(out, 400, "application/json",
                        "{\"error\":{\"message\":" + json::serialize(json::string(err)) + "}}", {},
                        keep);
    } else if (target == "/control" && head.method == "GET") {
      append_response(out, 200, "application/json", self->control_text(), {}, keep);
    } else if (target == "/health") {
      append_response(out, 200, "text/plain", "", {}, keep);
    } else {
      append_response(out, 404, "text/plain", "not found\n", {}, keep);
    }
    rb.consume(hl);
    ts->arm(std::chrono::seconds(10));
    auto [ec, n] = co_await asio::async_write(ts->sock, asio::buffer(out), use_nothrow);
    if (ec || !keep) break;
  }
  ts->stop();
  error_code ec;
  ts->sock.close(ec);
}

asio::awaitable<void> control_accept(rimpl* self) {
  while (!self->stopping.load()) {
    auto [ec, sock] = co_await self->ctl->async_accept(use_nothrow);
    if (ec) {
      if (ec == asio::error::operation_aborted || !self->ctl->is_open()) co_return;
      continue;
    }
    asio::co_spawn(self->ctl->get_executor(),
                   control_conn(self, std::make_shared<timed_socket>(std::move(sock))),
                   asio::detached);
  }
}
}  // namespace

relay::relay(relay_options o) : impl_(std::make_unique<impl>(std::move(o))) {
  impl_->delay_ms = impl_->opt.delay_ms;
  impl_->jitter_ms = impl_->opt.jitter_ms;
  impl_->bandwidth = impl_->opt.bandwidth;
}
relay::~relay() {
  stop();
  // Connections hold timers on the pool's context; drop them before the context goes.
  impl_->conns.clear();
}

std::uint16_t relay::start() {
  auto& s = *impl_;
  s.target = parse_endpoint(s.opt.to);
  s.acc = open_acceptors(s.pool, parse_endpoint(s.opt.listen)).front();
  if (!s.opt.control.empty()) {
    s.ctl = open_acceptors(s.pool, parse_endpoint(s.opt.control)).front();
    s.ctl_port = s.ctl->local_endpoint().port();
    asio::co_spawn(s.pool.at(0), control_accept(&s), asio::detached);
  }
  asio::co_spawn(s.pool.at(0), relay_accept(&s), asio::detached);
  s.pool.start();
  return s.acc->local_endpoint().port();
}

std::uint16_t relay::control_port() const {
  return impl_->ctl_port;
}

void relay::stop() {
  if (!impl_ || impl_->stopping.exchange(true)) return;
  impl_->pool.stop();
  impl_->pool.join();
}

// Control calls from other threads run on the relay's io thread so its state stays single-owner.
std::string relay::control_json() const {
  std::promise<std::string> p;
  auto f = p.get_future();
  asio::post(impl_->pool.at(0), [&] { p.set_value(impl_->control_text()); });
  return f.get();
}

bool relay::apply_control(std::string_view j, std::string& err) {
  std::promise<bool> p;
  auto f = p.get_future();
  asio::post(impl_->pool.at(0), [&] { p.set_value(impl_->apply(j, err)); });
  return f.get();
}

}  // namespace meridian::loadtest
