// An http::exchange held in memory: the request parsed from text given whole, the response
// recorded as the handler sends it, and a client that leaves when the test says. Drives a handler
// with no client socket. Used on the thread that runs the handler.
#pragma once

#include <cstdlib>
#include <string>
#include <vector>

#include "meridian/common/error.hpp"
#include "meridian/http/exchange.hpp"
#include "meridian/http/parser.hpp"

namespace test {

class memory_exchange final : public meridian::http::exchange {
 public:
  explicit memory_exchange(std::string request, meridian::common::time_point start)
      : text_(std::move(request)), fields_(64), start_(start) {
    using namespace meridian::http;
    std::size_t end = find_head_end(text_);
    parse_error err{};
    if (end == 0 || parse_request({text_.data(), end}, {64 * 1024, 64}, fields_, head_, err) !=
                        parse_status::complete)
      std::abort();  // the test's request must be well formed
    raw_ = std::string_view(text_).substr(end);
    body_.start(head_.body, head_.content_length, 1 << 20);
    body_.validate(raw_);
  }

  // ---- the request ----
  const meridian::http::request_head& head() const override { return head_; }
  std::string_view request_id() const override { return "memory-1"; }
  std::string_view method() const override { return head_.method; }
  std::string_view path() const override { return head_.path; }
  meridian::common::time_point request_start() const override { return start_; }
  std::string_view client_ip() const override { return "192.0.2.7"; }
  std::string_view scheme() const override { return "http"; }

  // ---- the body source: whole from the start ----
  const meridian::http::request_body& body() const override { return body_; }
  boost::asio::awaitable<meridian::http::body_result> buffer_body(std::size_t) override {
    co_return meridian::http::body_result::ok;
  }
  bool body_buffered(std::size_t) override { return true; }
  std::string_view buffered_body() const override { return raw_.substr(0, body_.validated()); }
  void consume_body() override {
    raw_.remove_prefix(body_.validated());
    body_.consume_all();
  }
  boost::asio::awaitable<meridian::http::body_result> read_body(std::span<std::string_view> spans,
                                                                std::size_t& n) override {
    n = 0;
    raw_.remove_prefix(body_.take(raw_, spans.data(), spans.size(), n));
    co_return meridian::http::body_result::ok;
  }
  std::string_view body_error() const override { return body_.error(); }

  // ---- the response sink ----
  void start_response(const meridian::http::response_head& h, meridian::http::body_kind,
                      std::uint64_t length) override {
    status_ = h.status;
    sized_ = h.body == meridian::http::body_kind::content_length;
    (void)length;
    headers.clear();
    for (const auto& f : h.fields())
      headers.emplace_back(std::string(f.name), std::string(f.value));
    add_extra();
  }
  void add_response_fields(std::span<const meridian::http::header> fields) override {
    extra_ = fields;
  }
  boost::asio::awaitable<bool> send(std::span<const std::string_view> payload, bool last) override {
    if (gone_) co_return false;
    for (auto p : payload) body_out += p;
    ended = ended || last;
    co_return true;
  }
  bool response_sized() const override { return sized_; }
  boost::asio::awaitable<void> reply_error(meridian::common::error_kind kind,
                                           std::string_view message) override {
    status_ = meridian::common::status_of(kind);
    body_out = meridian::common::error_body(kind, message);
    note_.assign(message);
    headers.clear();
    add_extra();
    ended = true;
    co_return;
  }
  boost::asio::awaitable<void> reply(int status, std::string_view, std::string_view body,
                                     std::string_view) override {
    status_ = status;
    body_out.assign(body);
    ended = true;
    co_return;
  }
  void close_after_response() override {}

  // ---- cancellation ----
  void watch_client(meridian::http::cancellable* t) override { target_ = t; }
  void unwatch_client() override { target_ = nullptr; }
  bool client_gone() const override { return gone_; }
  // The client leaves: what the handler watches is cancelled at once.
  void leave() {
    gone_ = true;
    if (target_) target_->cancel();
  }

  // ---- facts ----
  int status() const override { return status_; }
  std::uint64_t bytes_in() const override { return text_.size(); }
  std::uint64_t bytes_out() const override { return body_out.size(); }
  std::string_view note() const override { return note_; }
  void set_note(std::string_view why) override { note_.assign(why); }

  std::vector<std::pair<std::string, std::string>> headers;  // of the response started
  std::string body_out;                                      // payload sent so far
  bool ended = false;                                        // the response was completed

 private:
  std::string text_;
  void add_extra() {
    for (const auto& f : extra_) headers.emplace_back(std::string(f.name), std::string(f.value));
  }
  std::vector<meridian::http::header> fields_;
  std::span<const meridian::http::header> extra_;
  meridian::http::request_head head_;
  meridian::http::request_body body_;
  std::string_view raw_;
  meridian::common::time_point start_;
  int status_ = 0;
  bool sized_ = false, gone_ = false;
  std::string note_;
  meridian::http::cancellable* target_ = nullptr;
};

}  // namespace test
