#include "common/net.hpp"

#include <stdexcept>

namespace meridian::loadtest {

tcp::endpoint parse_endpoint(std::string_view s) {
  auto c = s.rfind(':');
  if (c == std::string_view::npos)
    throw std::invalid_argument("address needs host:port: " + std::string(s));
  std::string host(s.substr(0, c));
  if (host.empty()) host = "127.0.0.1";
  if (host == "localhost") host = "127.0.0.1";
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  unsigned port = 0;
  auto ps = s.substr(c + 1);
  auto [p, ec] = std::from_chars(ps.data(), ps.data() + ps.size(), port);
  if (ec != std::errc{} || p != ps.data() + ps.size() || port > 65535)
    throw std::invalid_argument("bad port in " + std::string(s));
  return {asio::ip::make_address(host), static_cast<unsigned short>(port)};
}

std::string endpoint_string(const tcp::endpoint& ep) {
  return ep.address().to_string() + ":" + std::to_string(ep.port());
}

io_pool::io_pool(int n) {
  if (n < 1) n = 1;
  for (int i = 0; i < n; ++i) {
    // Each socket is used only by its context's thread; cross-thread posts still need the scheduler
    // lock.
    ctxs_.push_back(std::make_unique<asio::io_context>(BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO));
    guards_.push_back(asio::make_work_guard(*ctxs_.back()));
  }
}

io_pool::~io_pool() {
  stop();
  join();
}

void io_pool::start() {
  for (auto& c : ctxs_) threads_.emplace_back([ctx = c.get()] { ctx->run(); });
}

void io_pool::stop() {
  for (auto& g : guards_) g.reset();
  for (auto& c : ctxs_) c->stop();
}

void io_pool::join() {
  for (auto& t : threads_)
    if (t.joinable() && t.get_id() != std::this_thread::get_id()) t.join();
  threads_.clear();
}

std::vector<std::shared_ptr<tcp::acceptor>> open_acceptors(io_pool& pool, tcp::endpoint ep) {
  std::vector<std::shared_ptr<tcp::acceptor>> out;
  for (std::size_t i = 0; i < pool.size(); ++i) {
    auto a = std::make_shared<tcp::acceptor>(pool.at(i));
    a->open(ep.protocol());
    a->set_option(asio::socket_base::reuse_address(true));
    if (pool.size() > 1) {
      int one = 1;
      ::setsockopt(a->native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    }
    a->bind(ep);
    a->listen(asio::socket_base::max_listen_connections);
    if (i == 0) ep = a->local_endpoint();
    out.push_back(std::move(a));
  }
  return out;
}

std::string_view reason_phrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 204:
      return "No Content";
    case 206:
      return "Partial Content";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 412:
      return "Precondition Failed";
    case 413:
      return "Payload Too Large";
    case 416:
      return "Range Not Satisfiable";
    case 429:
      return "Too Many Requests";
    case 500:
      return "Internal Server Error";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    default:
      return "Unknown";
  }
}

void append_response(std::string& out, int status, std::string_view content_type,
                     std::string_view body, std::string_view extra_headers, bool keep_alive) {
  out.append("HTTP/1.1 ");
  append_uint(out, static_cast<unsigned>(status));
  out.push_back(' ');
  out.append(reason_phrase(status));
  out.append("\r\ncontent-length: ");
  append_uint(out, body.size());
  if (!content_type.empty()) {
    out.append("\r\ncontent-type: ");
    out.append(content_type);
  }
  if (!keep_alive) out.append("\r\nconnection: close");
  out.append("\r\n");
  out.append(extra_headers);
  out.append("\r\n");
  out.append(body);
}

void append_chunked_head(std::string& out, int status, std::string_view content_type,
                         std::string_view extra_headers) {
  out.append("HTTP/1.1 ");
  append_uint(out, static_cast<unsigned>(status));
  out.push_back(' ');
  out.append(reason_phrase(status));
  out.append("\r\ntransfer-encoding: chunked\r\ncontent-type: ");
  out.append(content_type);
  out.append("\r\n");
  out.append(extra_headers);
  out.append("\r\n");
}

void append_chunk(std::string& out, std::string_view data) {
  if (data.empty()) return;
  char buf[20];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, data.size(), 16);
  out.append(buf, p);
  out.append("\r\n");
  out.append(data);
  out.append("\r\n");
}

asio::awaitable<bool> read_request(std::shared_ptr<timed_socket> ts, read_buffer& rb,
                                   request_head& head, std::string& body, std::size_t& head_len,
                                   steady::duration timeout, std::size_t max_body) {
  ts->arm(timeout);
  long n = 0;
  while ((n = parse_request_head(rb.view(), head)) == 0) {
    auto buf = rb.prepare();
    if (buf.size() == 0) co_return false;
    auto [ec, got] = co_await ts->sock.async_read_some(buf, use_nothrow);
    if (ec) co_return false;
    rb.commit(got);
  }
  if (n < 0) {
    std::string out;
    append_response(out, 400, "text/plain", "bad request\n", {}, false);
    co_await asio::async_write(ts->sock, asio::buffer(out), use_nothrow);
    co_return false;
  }
  head_len = static_cast<std::size_t>(n);
  body.clear();
  if (!head.chunked && head.content_length <= 0) co_return true;
  if (!head.chunked && static_cast<std::uint64_t>(head.content_length) > max_body) {
    std::string out;
    append_response(out, 413, "text/plain", "body too large\n", {}, false);
    co_await asio::async_write(ts->sock, asio::buffer(out), use_nothrow);
    co_return false;
  }
  // The head views must stay valid while the body arrives, so the body is decoded from bytes after
  // the head without consuming the head until the caller is done.
  body_decoder dec;
  if (head.chunked)
    dec.reset_chunked();
  else
    dec.reset_length(static_cast<std::uint64_t>(head.content_length));
  std::size_t parsed = head_len;
  while (true) {
    auto v = rb.view();
    std::size_t used = dec.feed(v.substr(parsed), [&](std::string_view d) { body.append(d); });
    parsed += used;
    if (dec.failed() || body.size() > max_body) co_return false;
    if (dec.done()) break;
    // Growing the buffer may move it; re-parse the head afterwards so views stay valid.
    auto buf = rb.prepare();
    if (buf.size() == 0) co_return false;
    auto [ec, got] = co_await ts->sock.async_read_some(buf, use_nothrow);
    if (ec) co_return false;
    rb.commit(got);
    parse_request_head(rb.view(), head);
  }
  head_len = parsed;  // caller consumes head and body together
  co_return true;
}

}  // namespace meridian::loadtest
