// In-memory object store speaking the small S3-like subset the gateway's storage clusters use:
// GET/PUT/HEAD/DELETE, single Range, ETag/If-None-Match/If-Range, synthetic objects of any size,
// bandwidth caps (server-wide and per connection), and GET bodies that fail after N bytes.
#include <boost/json.hpp>
#include <map>
#include <mutex>
#include <shared_mutex>

#include "common/net.hpp"
#include "mock/mock.hpp"

namespace meridian::loadtest {

namespace {
// A stored object (data) or a synthetic one (data null: `size` bytes of the pattern).
struct object {
  std::shared_ptr<const std::string> data;
  std::string etag;
  std::uint64_t size = 0;
};

// Synthetic content: byte i is pattern[i % period], the period prime so that no two ranges at
// different offsets look alike; the pattern is followed by a copy of its start so any slice of
// up to `slice_max` bytes is contiguous.
constexpr std::uint64_t period = 1048573;
constexpr std::size_t slice_max = 64 * 1024;

std::shared_ptr<const std::string> make_pattern(std::uint64_t seed) {
  auto p = std::make_shared<std::string>(period + slice_max, '\0');
  std::uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  for (std::size_t i = 0; i < period; ++i) {
    x += 0x9e3779b97f4a7c15ull;
    std::uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    (*p)[i] = static_cast<char>((z ^ (z >> 31)) & 0xff);
  }
  std::copy_n(p->begin(), slice_max, p->begin() + period);
  return p;
}

std::string make_etag(std::string_view d) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : d) h = (h ^ c) * 1099511628211ull;
  char b[24];
  std::snprintf(b, sizeof b, "\"%016llx\"", static_cast<unsigned long long>(h));
  return b;
}

// Parses "bytes=a-b", "bytes=a-", "bytes=-n"; returns 0 ok, 1 unsatisfiable, 2 ignore
// (malformed/multi).
int parse_range(std::string_view v, std::uint64_t size, std::uint64_t& first, std::uint64_t& last) {
  if (!v.starts_with("bytes=")) return 2;
  v.remove_prefix(6);
  if (v.find(',') != std::string_view::npos) return 2;
  auto dash = v.find('-');
  if (dash == std::string_view::npos) return 2;
  auto a = v.substr(0, dash), b = v.substr(dash + 1);
  auto num = [](std::string_view s, std::uint64_t& out) {
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return !s.empty() && ec == std::errc{} && p == s.data() + s.size();
  };
  std::uint64_t x = 0, y = 0;
  if (a.empty()) {
    if (!num(b, y)) return 2;
    if (y == 0 || size == 0) return 1;
    first = y >= size ? 0 : size - y;
    last = size - 1;
    return 0;
  }
  if (!num(a, x)) return 2;
  if (x >= size) return 1;
  first = x;
  if (b.empty())
    last = size - 1;
  else {
    if (!num(b, y) || y < x) return 2;
    last = std::min(y, size - 1);
  }
  return 0;
}
}  // namespace

struct storage_mock::impl {
  explicit impl(storage_options o) : opt(std::move(o)), pool(opt.threads) {}
  storage_options opt;
  io_pool pool;
  std::vector<std::shared_ptr<tcp::acceptor>> acceptors;
  std::string hdr;
  std::atomic<bool> stopping{false};
  std::shared_mutex mu;
  std::map<std::string, object, std::less<>> objects;
  std::mutex bw_mu;
  steady::time_point bw_next{};
  std::shared_ptr<const std::string> pattern;            // synthetic objects' content
  std::vector<std::pair<std::string, object>> prefixes;  // --object /PREFIX*=SIZE
  std::atomic<std::uint64_t> failures{0};                // responses failed by fault injection

  // Reserves n bytes of the shared bandwidth and returns when they may be sent.
  steady::time_point reserve(std::size_t n) {
    if (opt.bandwidth == 0) return steady::now();
    std::lock_guard lk(bw_mu);
    auto now = steady::now();
    if (bw_next < now) bw_next = now;
    auto at = bw_next;
    bw_next += std::chrono::nanoseconds(static_cast<std::int64_t>(
        static_cast<double>(n) * 1e9 / static_cast<double>(opt.bandwidth)));
    return at;
  }
};

namespace {
using simpl = storage_mock::impl;

// Sends [off, off + len) of an object (data, or the synthetic pattern when data is null) under
// the bandwidth caps; false when the connection failed or fault injection ended it.
asio::awaitable<bool> send_body(simpl* self, std::shared_ptr<timed_socket> ts,
                                std::shared_ptr<const std::string> d, std::uint64_t off,
                                std::uint64_t len) {
  asio::steady_timer t(ts->sock.get_executor());
  const auto& o = self->opt;
  std::uint64_t sent = 0;
  steady::time_point conn_next = steady::now();
  // Only responses that reach fail_after count towards fail_count.
  bool fails = o.fail_after != UINT64_MAX && len > o.fail_after &&
               (o.fail_count == 0 || self->failures.fetch_add(1) < o.fail_count);
  while (len > 0) {
    std::uint64_t n = std::min<std::uint64_t>(len, slice_max);
    if (fails) n = std::min(n, o.fail_after - sent);
    if (n == 0) {
      if (o.fail_stall) {
        t.expires_after(std::chrono::seconds(120));
        co_await t.async_wait(use_nothrow);
      }
      ts->close_hard();
      co_return false;
    }
    auto at = self->reserve(static_cast<std::size_t>(n));
    if (o.conn_bandwidth) {
      at = std::max(at, conn_next);
      conn_next = std::max(conn_next, steady::now()) +
                  std::chrono::nanoseconds(static_cast<std::int64_t>(
                      static_cast<double>(n) * 1e9 / static_cast<double>(o.conn_bandwidth)));
    }
    if (at > steady::now()) {
      t.expires_at(at);
      co_await t.async_wait(use_nothrow);
    }
    ts->arm(std::chrono::seconds(30));
    const char* p = d ? d->data() + off : self->pattern->data() + off % period;
    auto [ec, w] = co_await asio::async_write(
        ts->sock, asio::buffer(p, static_cast<std::size_t>(n)), use_nothrow);
    if (ec) co_return false;
    off += n;
    len -= n;
    sent += n;
  }
  co_return true;
}

// An object slice to send after the head.
struct body_slice {
  std::shared_ptr<const std::string> data;  // null: synthetic
  std::uint64_t off = 0, len = 0;
  bool send = false;
};

// GET and HEAD: writes the head (or a whole 304/404/416 reply) into out and, for a GET that
// finds the object, the slice to send after it.
void answer_read(simpl* self, const std::string& method, const std::string& key, std::string range,
                 const std::string& inm, const std::string& if_range, bool keep, std::string& out,
                 body_slice& slice) {
  object obj;
  bool found = false;
  {
    std::shared_lock lk(self->mu);
    auto it = self->objects.find(key);
    if (it != self->objects.end()) obj = it->second, found = true;
  }
  // A key under a synthetic prefix (--object /PREFIX*=SIZE) that nothing was PUT at.
  for (std::size_t i = 0; !found && i < self->prefixes.size(); ++i)
    if (key.starts_with(self->prefixes[i].first)) obj = self->prefixes[i].second, found = true;
  if (!found) {
    append_response(out, 404, "text/plain", method == "HEAD" ? "" : "no such key\n", self->hdr,
                    keep);
  } else if (!inm.empty() && (inm == obj.etag || inm == "*")) {
    out = "HTTP/1.1 304 Not Modified\r\netag: " + obj.etag + "\r\n" + self->hdr + "\r\n";
  } else {
    // If-Range: the range applies only while the object is the version the client names.
    if (!if_range.empty() && if_range != obj.etag) range.clear();
    const std::uint64_t size = obj.size;
    std::uint64_t first = 0, last = size ? size - 1 : 0;
    int rs = range.empty() ? 2 : parse_range(range, size, first, last);
    int status = 200;
    std::string extra = self->hdr + "etag: " + obj.etag + "\r\naccept-ranges: bytes\r\n";
    if (rs == 1) {
      append_response(out, 416, "text/plain", "",
                      extra + "content-range: bytes */" + std::to_string(size) + "\r\n", keep);
    } else {
      if (rs == 0) {
        status = 206;
        extra += "content-range: bytes " + std::to_string(first) + "-" + std::to_string(last) +
                 "/" + std::to_string(size) + "\r\n";
      } else {
        first = 0;
        last = size ? size - 1 : 0;
      }
      slice.len = size ? last - first + 1 : 0;
      slice.off = first;
      out = "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason_phrase(status)) +
            "\r\ncontent-length: " + std::to_string(slice.len) +
            "\r\ncontent-type: application/octet-stream\r\n" + extra +
            (keep ? "" : "connection: close\r\n") + "\r\n";
      slice.data = obj.data;
      slice.send = method == "GET" && slice.len > 0;
    }
  }
}

asio::awaitable<void> storage_conn(simpl* self, std::shared_ptr<timed_socket> ts) {
  ts->start_watch();
  error_code sec;
  ts->sock.set_option(tcp::no_delay(true), sec);
  read_buffer rb(16 * 1024, self->opt.max_object + 64 * 1024);
  request_head head;
  std::string body, out;
  while (!self->stopping.load()) {
    std::size_t head_len = 0;
    const bool got = co_await read_request(ts, rb, head, body, head_len, std::chrono::seconds(60),
                                           self->opt.max_object);
    if (!got) break;
    std::string key(head.target.substr(0, head.target.find('?')));
    const bool keep = head.keep_alive;
    const std::string method(head.method);
    const std::string range(head.find("range"));
    const std::string inm(head.find("if-none-match"));
    const std::string if_range(head.find("if-range"));
    rb.consume(head_len);
    out.clear();
    body_slice slice;
    if (key.size() < 2 || key[0] != '/') {
      append_response(out, 400, "text/plain", "bad key\n", self->hdr, keep);
    } else if (key == "/health" && (method == "GET" || method == "HEAD")) {
      append_response(out, 200, "text/plain", method == "GET" ? "ok\n" : "", self->hdr, keep);
    } else if (method == "PUT") {
      auto etag = make_etag(body);
      {
        std::unique_lock lk(self->mu);
        auto n = body.size();
        self->objects[key] = object{std::make_shared<const std::string>(std::move(body)), etag, n};
      }
      body = std::string();
      append_response(out, 200, {}, {}, self->hdr + "etag: " + etag + "\r\n", keep);
    } else if (method == "DELETE") {
      std::size_t n;
      {
        std::unique_lock lk(self->mu);
        n = self->objects.erase(key);
      }
      append_response(out, n ? 204 : 404, {}, {}, self->hdr, keep);
    } else if (method == "GET" || method == "HEAD") {
      answer_read(self, method, key, range, inm, if_range, keep, out, slice);
    } else {
      append_response(out, 405, "text/plain", "method not allowed\n", self->hdr, keep);
    }
    ts->arm(std::chrono::seconds(30));
    auto [ec, n] = co_await asio::async_write(ts->sock, asio::buffer(out), use_nothrow);
    if (ec) break;
    if (slice.send) {
      const bool body_sent = co_await send_body(self, ts, slice.data, slice.off, slice.len);
      if (!body_sent) break;
    }
    if (!keep) break;
  }
  ts->stop();
  error_code ec;
  ts->sock.shutdown(tcp::socket::shutdown_send, ec);
  ts->sock.close(ec);
}

asio::awaitable<void> storage_accept(simpl* self, std::shared_ptr<tcp::acceptor> acc) {
  while (!self->stopping.load()) {
    auto [ec, sock] = co_await acc->async_accept(use_nothrow);
    if (ec) {
      if (ec == asio::error::operation_aborted || !acc->is_open()) co_return;
      continue;
    }
    asio::co_spawn(acc->get_executor(),
                   storage_conn(self, std::make_shared<timed_socket>(std::move(sock))),
                   asio::detached);
  }
}
}  // namespace

storage_mock::storage_mock(storage_options o) : impl_(std::make_unique<impl>(std::move(o))) {}
storage_mock::~storage_mock() {
  stop();
}

std::uint16_t storage_mock::start() {
  auto& s = *impl_;
  s.acceptors = open_acceptors(s.pool, parse_endpoint(s.opt.listen));
  auto port = s.acceptors.front()->local_endpoint().port();
  if (!s.opt.synthetic.empty()) {
    s.pattern = make_pattern(s.opt.seed);
    char seed[24];
    std::snprintf(seed, sizeof seed, "%llx", static_cast<unsigned long long>(s.opt.seed));
    for (const auto& [key, size] : s.opt.synthetic) {
      object o{nullptr, "\"syn-" + std::string(seed) + "-" + std::to_string(size) + "\"", size};
      if (key.ends_with('*'))
        s.prefixes.emplace_back(key.substr(0, key.size() - 1), o);
      else
        s.objects[key] = o;
    }
  }
  s.hdr =
      "x-mock-backend: " + (s.opt.name.empty() ? "storage-" + std::to_string(port) : s.opt.name) +
      "\r\n";
  for (auto& a : s.acceptors)
    asio::co_spawn(a->get_executor(), storage_accept(&s, a), asio::detached);
  s.pool.start();
  return port;
}

void storage_mock::stop() {
  if (!impl_ || impl_->stopping.exchange(true)) return;
  impl_->pool.stop();
  impl_->pool.join();
}

}  // namespace meridian::loadtest
