// The LLM mock's gRPC front (KServe v2 / Triton over h2c, libnghttp2's server session): the same
// engine as the OpenAI front, so gRPC calls queue, batch and slow down with load exactly as HTTP
// requests do. ModelInfer answers once the generation is done; ModelStreamInfer answers each
// request message with one response message per token (Triton's decoupled streaming); ServerReady,
// ModelReady and RepositoryIndex answer for the served model. Messages are read and written in
// protobuf's wire format by hand (model_name = 1, id = 3; no generated code).
#include "mock/llm_grpc.hpp"

#include <nghttp2/nghttp2.h>

#include <deque>
#include <map>
#include <memory>
#include <string>

#include "mock/llm_engine.hpp"

namespace meridian::loadtest::llm {

namespace {

void put_varint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out += static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  out += static_cast<char>(v);
}
void put_bytes(std::string& out, int number, std::string_view b) {
  put_varint(out, (static_cast<std::uint64_t>(number) << 3) | 2);
  put_varint(out, b.size());
  out.append(b);
}
std::string framed(std::string_view msg) {
  std::string out(5, '\0');
  auto n = static_cast<std::uint32_t>(msg.size());
  for (int i = 0; i < 4; ++i) out[1 + i] = static_cast<char>(n >> (24 - 8 * i));
  out.append(msg);
  return out;
}

// The length-delimited field `number` of a message (the last one), "" when absent or malformed.
std::string_view string_field(std::string_view msg, int number) {
  std::string_view found;
  std::size_t i = 0;
  auto varint = [&](std::uint64_t& v) {
    v = 0;
    for (int s = 0; s < 64 && i < msg.size(); s += 7) {
      auto b = static_cast<unsigned char>(msg[i++]);
      v |= static_cast<std::uint64_t>(b & 0x7f) << s;
      if (!(b & 0x80)) return true;
    }
    return false;
  };
  while (i < msg.size()) {
    std::uint64_t key = 0, v = 0;
    if (!varint(key)) return {};
    switch (key & 7) {
      case 0:
        if (!varint(v)) return {};
        break;
      case 1:
        i += 8;
        break;
      case 5:
        i += 4;
        break;
      case 2:
        if (!varint(v) || v > msg.size() - i) return {};
        if (static_cast<int>(key >> 3) == number) found = msg.substr(i, v);
        i += v;
        break;
      default:
        return {};
    }
  }
  return i == msg.size() ? found : std::string_view();
}

struct h2_conn;

struct h2_stream {
  std::int32_t id = 0;
  std::string path, in, out;
  std::size_t out_begin = 0;
  bool request_ended = false;
  bool done = false;  // the last message is queued: trailers follow
  bool closed = false;
  int grpc_status = 0;
  std::string grpc_message;
  std::shared_ptr<gen_request> gen;          // the generation in progress, if any
  std::unique_ptr<asio::steady_timer> wake;  // the handler waits on it for more request data
};

struct h2_conn : std::enable_shared_from_this<h2_conn> {
  h2_conn(impl_t* s, tcp::socket sock)
      : self(s), socket(std::move(sock)), writer_wake(socket.get_executor()) {}
  ~h2_conn() {
    if (session) nghttp2_session_del(session);
  }
  impl_t* self;
  tcp::socket socket;
  nghttp2_session* session = nullptr;
  std::map<std::int32_t, std::shared_ptr<h2_stream>> streams;
  asio::steady_timer writer_wake;
  bool closed = false;

  void kick() { writer_wake.cancel(); }

  void respond(h2_stream& st) {
    const nghttp2_nv head[] = {
        {(std::uint8_t*)":status", (std::uint8_t*)"200", 7, 3, NGHTTP2_NV_FLAG_NONE},
        {(std::uint8_t*)"content-type", (std::uint8_t*)"application/grpc", 12, 16,
         NGHTTP2_NV_FLAG_NONE}};
    nghttp2_data_provider dp{};
    dp.source.ptr = &st;
    dp.read_callback = &h2_conn::read_out;
    nghttp2_submit_response(session, st.id, head, 2, &dp);
  }
  void send(h2_stream& st, std::string_view message) {
    st.out += framed(message);
    nghttp2_session_resume_data(session, st.id);
    kick();
  }
  void finish(h2_stream& st, int status, std::string msg = {}) {
    st.grpc_status = status;
    st.grpc_message = std::move(msg);
    st.done = true;
    nghttp2_session_resume_data(session, st.id);
    kick();
  }

  static ssize_t read_out(nghttp2_session* s, std::int32_t id, std::uint8_t* buf, std::size_t len,
                          std::uint32_t* flags, nghttp2_data_source* src, void*) {
    auto& st = *static_cast<h2_stream*>(src->ptr);
    std::size_t n = std::min(len, st.out.size() - st.out_begin);
    std::memcpy(buf, st.out.data() + st.out_begin, n);
    st.out_begin += n;
    if (st.out_begin == st.out.size()) {
      st.out.clear();
      st.out_begin = 0;
      if (st.done) {
        *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        auto code = std::to_string(st.grpc_status);
        const nghttp2_nv tr[] = {
            {(std::uint8_t*)"grpc-status", (std::uint8_t*)code.data(), 11, code.size(),
             NGHTTP2_NV_FLAG_NONE},
            {(std::uint8_t*)"grpc-message", (std::uint8_t*)st.grpc_message.data(), 12,
             st.grpc_message.size(), NGHTTP2_NV_FLAG_NONE}};
        nghttp2_submit_trailer(s, id, tr, st.grpc_message.empty() ? 1 : 2);
      } else if (n == 0) {
        return NGHTTP2_ERR_DEFERRED;
      }
    }
    return static_cast<ssize_t>(n);
  }
};

asio::awaitable<void> handle_call(std::shared_ptr<h2_conn> c, std::shared_ptr<h2_stream> st);

int on_begin_headers(nghttp2_session*, const nghttp2_frame* f, void* user) {
  auto& c = *static_cast<h2_conn*>(user);
  if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  auto st = std::make_shared<h2_stream>();
  st->id = f->hd.stream_id;
  st->wake = std::make_unique<asio::steady_timer>(c.socket.get_executor());
  c.streams[st->id] = st;
  nghttp2_session_set_stream_user_data(c.session, st->id, st.get());
  return 0;
}
int on_header(nghttp2_session*, const nghttp2_frame* f, const std::uint8_t* name, std::size_t nl,
              const std::uint8_t* value, std::size_t vl, std::uint8_t, void* user) {
  auto& c = *static_cast<h2_conn*>(user);
  auto it = c.streams.find(f->hd.stream_id);
  if (it != c.streams.end() && std::string_view((const char*)name, nl) == ":path")
    it->second->path.assign((const char*)value, vl);
  return 0;
}
int on_data(nghttp2_session*, std::uint8_t, std::int32_t id, const std::uint8_t* data,
            std::size_t len, void* user) {
  auto& c = *static_cast<h2_conn*>(user);
  if (auto it = c.streams.find(id); it != c.streams.end()) {
    it->second->in.append((const char*)data, len);
    it->second->wake->cancel();
  }
  return 0;
}
int on_frame(nghttp2_session*, const nghttp2_frame* f, void* user) {
  auto& c = *static_cast<h2_conn*>(user);
  auto it = c.streams.find(f->hd.stream_id);
  if (it == c.streams.end()) return 0;
  auto st = it->second;
  if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST) {
    c.respond(*st);
    asio::co_spawn(c.socket.get_executor(), handle_call(c.shared_from_this(), st), asio::detached);
  }
  if ((f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) &&
      (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
    st->request_ended = true;
    st->wake->cancel();
  }
  return 0;
}
int on_close(nghttp2_session*, std::int32_t id, std::uint32_t, void* user) {
  auto& c = *static_cast<h2_conn*>(user);
  auto it = c.streams.find(id);
  if (it == c.streams.end()) return 0;
  auto st = it->second;
  st->closed = true;
  st->wake->cancel();
  if (st->gen && !st->gen->finished) {
    st->gen->abandoned = true;
    st->gen->notify.cancel();
  }
  c.streams.erase(it);
  return 0;
}

// The next whole request message of a stream (unframed); false once the request ended without one.
asio::awaitable<bool> next_message(h2_stream& st, std::string& msg) {
  while (true) {
    if (st.in.size() >= 5) {
      std::uint32_t len = 0;
      for (int i = 1; i < 5; ++i) len = (len << 8) | static_cast<unsigned char>(st.in[i]);
      if (st.in.size() - 5 >= len) {
        msg = st.in.substr(5, len);
        st.in.erase(0, 5 + len);
        co_return true;
      }
    }
    if (st.request_ended || st.closed) co_return false;
    st.wake->expires_at(steady::time_point::max());
    co_await st.wake->async_wait(use_nothrow);
  }
}

// One generation on the shared engine; calls `token` for each token as it is ready. False when
// the client went away first.
template <class F>
asio::awaitable<bool> generate(std::shared_ptr<h2_conn> c, h2_stream& st, std::size_t prompt_bytes,
                               F token) {
  auto* self = c->self;
  auto r = std::make_shared<gen_request>(c->socket.get_executor());
  r->arrived = steady::now();
  r->prompt_tokens = std::max<int>(1, static_cast<int>(prompt_bytes / 4));
  r->output_tokens = self->opt.default_max_tokens;
  self->c_requests.fetch_add(1, std::memory_order_relaxed);
  self->c_prompt_tokens.fetch_add(static_cast<std::uint64_t>(r->prompt_tokens),
                                  std::memory_order_relaxed);
  st.gen = r;
  co_await wait_stall(self);
  submit_to_engine(self, r);
  int sent = 0;
  while (!r->abandoned) {
    while (sent < r->tokens_ready) {
      ++sent;
      token(sent);
    }
    if (r->finished) break;
    r->notify.expires_at(steady::time_point::max());
    co_await r->notify.async_wait(use_nothrow);
  }
  st.gen.reset();
  if (r->abandoned) {
    self->c_abandoned.fetch_add(1, std::memory_order_relaxed);
    if (!r->finished) cancel_in_engine(self, r, true);
    co_return false;
  }
  self->c_completed.fetch_add(1, std::memory_order_relaxed);
  co_return true;
}

asio::awaitable<void> handle_call(std::shared_ptr<h2_conn> c, std::shared_ptr<h2_stream> st) {
  constexpr std::string_view svc = "/inference.GRPCInferenceService/";
  const auto& model = c->self->opt.model;
  std::string method = st->path.starts_with(svc) ? st->path.substr(svc.size()) : std::string();
  std::string msg;
  bool got = co_await next_message(*st, msg);
  if (st->closed) co_return;
  if (!got) {
    c->finish(*st, 13, "no request message");
    co_return;
  }
  std::string answer;
  if (method == "ServerReady" || (method == "ModelReady" && string_field(msg, 1) == model)) {
    answer = std::string("\x08\x01", 2);
  } else if (method == "ModelReady") {
    answer.clear();  // ready: false
  } else if (method == "RepositoryIndex") {
    std::string index;
    put_bytes(index, 1, model);
    put_bytes(index, 2, "1");
    put_bytes(index, 3, "READY");
    put_bytes(answer, 1, index);
  } else if (method == "ModelInfer" || method == "ModelStreamInfer") {
    const bool streaming = method == "ModelStreamInfer";
    bool more = true;
    while (more) {
      std::string name(string_field(msg, 1)), id(string_field(msg, 3));
      if (name != model) {
        c->finish(*st, 5, "unknown model " + name);
        co_return;
      }
      std::string reply;
      put_bytes(reply, 1, name);
      put_bytes(reply, 3, id);
      bool ok = co_await generate(c, *st, msg.size(), [&](int) {
        if (streaming && !st->closed) {
          std::string m;
          put_bytes(m, 2, reply);  // ModelStreamInferResponse.infer_response
          c->send(*st, m);
        }
      });
      if (!ok || st->closed) co_return;
      if (!streaming) c->send(*st, reply);
      // (Not inside the condition: GCC 12 miscompiles co_await within && .)
      more = false;
      if (streaming) more = co_await next_message(*st, msg);
    }
    if (!st->closed) c->finish(*st, 0);
    co_return;
  } else {
    c->finish(*st, 12, "method not implemented: " + st->path);
    co_return;
  }
  c->send(*st, answer);
  c->finish(*st, 0);
}

asio::awaitable<void> writer(std::shared_ptr<h2_conn> c) {
  while (!c->closed) {
    std::string batch;
    while (batch.size() < 256 * 1024) {
      const std::uint8_t* data = nullptr;
      auto n = nghttp2_session_mem_send(c->session, &data);
      if (n <= 0) break;
      batch.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(n));
    }
    if (!batch.empty()) {
      auto [ec, n] = co_await asio::async_write(c->socket, asio::buffer(batch), use_nothrow);
      if (ec) break;
      continue;
    }
    if (!nghttp2_session_want_read(c->session) && !nghttp2_session_want_write(c->session)) break;
    c->writer_wake.expires_at(steady::time_point::max());
    co_await c->writer_wake.async_wait(use_nothrow);
  }
  c->closed = true;
  error_code ec;
  c->socket.shutdown(tcp::socket::shutdown_both, ec);
}

asio::awaitable<void> serve_h2(impl_t* self, tcp::socket sock) {
  error_code sec;
  sock.set_option(tcp::no_delay(true), sec);
  auto c = std::make_shared<h2_conn>(self, std::move(sock));
  nghttp2_session_callbacks* cb = nullptr;
  nghttp2_session_callbacks_new(&cb);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_close);
  nghttp2_session_server_new(&c->session, cb, c.get());
  nghttp2_session_callbacks_del(cb);
  const nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 1000}};
  nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, 1);
  asio::co_spawn(c->socket.get_executor(), writer(c), asio::detached);
  std::array<char, 16384> buf;
  while (!c->closed && !self->stopping.load(std::memory_order_relaxed)) {
    auto [ec, n] = co_await c->socket.async_read_some(asio::buffer(buf), use_nothrow);
    if (ec) break;
    if (nghttp2_session_mem_recv(c->session, reinterpret_cast<const std::uint8_t*>(buf.data()), n) <
        0)
      break;
    c->kick();
  }
  // The connection is gone: every stream's handler and generation ends.
  for (auto& [id, st] : c->streams) {
    st->closed = true;
    st->wake->cancel();
    if (st->gen && !st->gen->finished) {
      st->gen->abandoned = true;
      st->gen->notify.cancel();
    }
  }
  c->closed = true;
  c->kick();
}

}  // namespace

asio::awaitable<void> grpc_accept_loop(impl_t* self, std::shared_ptr<tcp::acceptor> acc) {
  while (!self->stopping.load()) {
    auto [ec, sock] = co_await acc->async_accept(use_nothrow);
    if (ec) {
      if (ec == asio::error::operation_aborted || !acc->is_open()) co_return;
      continue;
    }
    asio::co_spawn(acc->get_executor(), serve_h2(self, std::move(sock)), asio::detached);
  }
}

}  // namespace meridian::loadtest::llm
