// OpenAI-compatible engine emulator, HTTP side: per-thread acceptors and connections that answer
// /static, /health, /metrics, /control and /v1/models themselves and hand generation requests to
// llm_generation. The engine loop (llm_engine) runs on context 0 and owns the engine_model; the two
// sides talk only by posting to each other's executor.
#include <memory>
#include <random>
#include <string>
#include <string_view>

#include "common/net.hpp"
#include "mock/llm_control.hpp"
#include "mock/llm_engine.hpp"
#include "mock/llm_generation.hpp"
#include "mock/llm_grpc.hpp"
#include "mock/llm_impl.hpp"
#include "mock/llm_openai.hpp"
#include "mock/mock.hpp"

namespace meridian::loadtest {

namespace llm {

namespace {

// The generation endpoint a request targets, if any.
bool generation_kind(std::string_view target, bool post, api& kind) {
  if (!post) return false;
  if (target == "/v1/chat/completions")
    kind = api::chat;
  else if (target == "/v1/completions")
    kind = api::completions;
  else if (target == "/v1/embeddings")
    kind = api::embeddings;
  else
    return false;
  return true;
}

// A server busy with its engine answers its health check late: a wait uniform up to
// health_delay_ms.
asio::awaitable<void> health_delay(impl_t* self, const std::shared_ptr<timed_socket>& ts) {
  double max_ms = self->snapshot().health_delay_ms;
  if (max_ms <= 0) co_return;
  thread_local std::mt19937_64 rng(self->opt.seed ^ 0x9e3779b97f4a7c15ull);
  double ms = std::uniform_real_distribution<double>(0, max_ms)(rng);
  asio::steady_timer t(ts->sock.get_executor());
  t.expires_after(std::chrono::microseconds(static_cast<std::int64_t>(ms * 1000)));
  co_await t.async_wait(use_nothrow);
}

// Builds the reply to every other endpoint (control, health, metrics, models, 404).
void answer(impl_t* self, std::string_view target, bool get, bool post, const std::string& body,
            bool keep, std::string& out) {
  std::string_view hdr = self->backend_header;
  if (target == "/control" && (get || post)) {
    std::string err;
    if (post && !apply_control(self, body, err))
      append_error_json(out, 400, err, "BadRequestError", hdr, keep);
    else
      append_response(out, 200, "application/json", control_text(self), hdr, keep);
  } else if (target == "/health" && get) {
    append_response(out, 200, "text/plain", "", hdr, keep);
  } else if (target == "/metrics" && get) {
    append_response(out, 200, "text/plain; version=0.0.4", metrics_text(self), hdr, keep);
  } else if (target == "/v1/models" && get) {
    append_response(out, 200, "application/json",
                    models_body(self->opt.model, self->opt.max_tokens_cap), hdr, keep);
  } else {
    append_error_json(out, 404, "Not Found", "NotFoundError", hdr, keep);
  }
}

asio::awaitable<void> serve_conn(impl_t* self, std::shared_ptr<timed_socket> ts) {
  ts->start_watch();
  error_code sec;
  ts->sock.set_option(tcp::no_delay(true), sec);
  read_buffer rb;
  request_head head;
  std::string body, out;
  const auto idle =
      std::chrono::microseconds(static_cast<std::int64_t>(self->opt.idle_timeout_s * 1e6));
  while (!self->stopping.load(std::memory_order_relaxed)) {
    std::size_t head_len = 0;
    const bool got = co_await read_request(ts, rb, head, body, head_len, idle, 64 << 20);
    if (!got) break;
    std::string_view target = head.target;
    if (auto q = target.find('?'); q != std::string_view::npos) target = target.substr(0, q);
    const bool keep = head.keep_alive;
    const bool get = head.method == "GET";
    const bool post = head.method == "POST";
    if (get && target == "/static") {
      rb.consume(head_len);
      self->c_static.fetch_add(1, std::memory_order_relaxed);
      co_await wait_stall(self);
      ts->arm(std::chrono::seconds(30));
      auto [ec, n] =
          co_await asio::async_write(ts->sock, asio::buffer(self->static_response), use_nothrow);
      if (ec || !keep) break;
      continue;
    }
    api kind{};
    if (generation_kind(target, post, kind)) {
      rb.consume(head_len);
      const bool open = co_await handle_generation(self, ts, kind, std::move(body), keep);
      if (!open) break;
      body = std::string();
      continue;
    }
    // Probes and scrapes wait out an injected stall like the engine does; a busy server's
    // health check waits a while too.
    if (get && (target == "/health" || target == "/metrics")) co_await wait_stall(self);
    if (get && target == "/health") co_await health_delay(self, ts);
    out.clear();
    answer(self, target, get, post, body, keep, out);
    rb.consume(head_len);
    ts->arm(std::chrono::seconds(30));
    auto [ec, n] = co_await asio::async_write(ts->sock, asio::buffer(out), use_nothrow);
    if (ec || !keep) break;
  }
  ts->stop();
  error_code ec;
  ts->sock.shutdown(tcp::socket::shutdown_send, ec);
  ts->sock.close(ec);
}

asio::awaitable<void> accept_loop(impl_t* self, std::shared_ptr<tcp::acceptor> acc) {
  while (!self->stopping.load()) {
    auto [ec, sock] = co_await acc->async_accept(use_nothrow);
    if (ec) {
      if (ec == asio::error::operation_aborted || !acc->is_open()) co_return;
      continue;
    }
    auto ts = std::make_shared<timed_socket>(std::move(sock));
    asio::co_spawn(acc->get_executor(), serve_conn(self, ts), asio::detached);
  }
}

}  // namespace

}  // namespace llm

llm_mock::llm_mock(llm_options o) : impl_(std::make_unique<impl>(std::move(o))) {}
llm_mock::~llm_mock() {
  stop();
}

std::uint16_t llm_mock::start() {
  auto& s = *impl_;
  s.acceptors = open_acceptors(s.pool, parse_endpoint(s.opt.listen));
  const auto port = s.acceptors.front()->local_endpoint().port();
  s.name = s.opt.name.empty() ? "llm-" + std::to_string(port) : s.opt.name;
  s.started_at.store(llm::wall_seconds());
  s.backend_header = "x-mock-backend: " + s.name + "\r\n";
  s.static_response.clear();
  append_response(s.static_response, 200, "text/plain", "Hello, World!", s.backend_header, true);
  s.wake = std::make_unique<asio::steady_timer>(s.engine_ex());
  asio::co_spawn(s.engine_ex(), llm::engine_loop(&s), asio::detached);
  for (auto& a : s.acceptors)
    asio::co_spawn(a->get_executor(), llm::accept_loop(&s, a), asio::detached);
  if (!s.opt.grpc_listen.empty()) {
    s.grpc_acceptors = open_acceptors(s.pool, parse_endpoint(s.opt.grpc_listen));
    for (auto& a : s.grpc_acceptors)
      asio::co_spawn(a->get_executor(), llm::grpc_accept_loop(&s, a), asio::detached);
  }
  s.pool.start();
  return port;
}

std::uint16_t llm_mock::grpc_port() const {
  const auto& a = impl_->grpc_acceptors;
  return a.empty() ? 0 : a.front()->local_endpoint().port();
}

void llm_mock::stop() {
  if (!impl_ || impl_->stopping.exchange(true)) return;
  impl_->pool.stop();
  impl_->pool.join();
}

std::string llm_mock::control_json() const {
  return llm::control_text(impl_.get());
}
bool llm_mock::apply_control(std::string_view j, std::string& err) {
  return llm::apply_control(impl_.get(), j, err);
}

}  // namespace meridian::loadtest
