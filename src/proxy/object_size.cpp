#include "proxy/object_size.hpp"

#include <functional>

#include "proxy/object_resume.hpp"

namespace meridian::proxy {

namespace {
// A single byte range's length: "bytes=a-b", "bytes=a-" (needs the size), "bytes=-n".
std::optional<double> range_bytes(std::string_view v, std::optional<std::uint64_t> known) {
  if (!v.starts_with("bytes=") || v.find(',') != std::string_view::npos) return std::nullopt;
  v.remove_prefix(6);
  auto dash = v.find('-');
  if (dash == std::string_view::npos) return std::nullopt;
  std::uint64_t a = 0, b = 0;
  auto first = v.substr(0, dash), last = v.substr(dash + 1);
  if (first.empty()) {
    if (!parse_uint(last, b)) return std::nullopt;
    return known ? static_cast<double>(std::min(b, *known)) : static_cast<double>(b);
  }
  if (!parse_uint(first, a)) return std::nullopt;
  if (last.empty()) {
    if (!known) return std::nullopt;
    return *known > a ? static_cast<double>(*known - a) : 0.0;
  }
  if (!parse_uint(last, b) || b < a) return std::nullopt;
  if (known && b >= *known) b = *known ? *known - 1 : 0;
  return b >= a ? static_cast<double>(b - a + 1) : 0.0;
}
}  // namespace

object_sizes::object_sizes(std::size_t capacity) {
  std::size_t n = 1;
  while (n < capacity) n <<= 1;
  slots_ = std::make_unique<slot[]>(n);
  mask_ = n - 1;
}

std::uint64_t object_sizes::key_of(std::size_t cluster, std::string_view host,
                                   std::string_view path) {
  std::hash<std::string_view> h;
  std::uint64_t k = h(host) * 0x9e3779b97f4a7c15ull ^ h(path);
  k ^= static_cast<std::uint64_t>(cluster) << 56;
  return k ? k : 1;
}

std::optional<std::uint64_t> object_sizes::find(std::uint64_t key) const {
  const auto& s = slots_[key & mask_];
  auto before = s.seq.load(std::memory_order_acquire);
  if (before & 1) return std::nullopt;  // being written
  auto k = s.key.load(std::memory_order_relaxed);
  auto size = s.size.load(std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_acquire);
  if (s.seq.load(std::memory_order_relaxed) != before || k != key) return std::nullopt;
  return size;
}

void object_sizes::put(std::uint64_t key, std::uint64_t size) {
  auto& s = slots_[key & mask_];
  auto seq = s.seq.load(std::memory_order_relaxed);
  // Another writer holds the slot: this size is dropped (only an estimate is lost).
  if ((seq & 1) || !s.seq.compare_exchange_strong(seq, seq + 1, std::memory_order_acquire)) return;
  std::atomic_thread_fence(std::memory_order_release);
  s.key.store(key, std::memory_order_relaxed);
  s.size.store(size, std::memory_order_relaxed);
  s.seq.store(seq + 2, std::memory_order_release);
}

void object_sizes::learn(std::uint64_t key, std::string_view method, const http::response_head& r) {
  if (method != "GET" && method != "HEAD") return;
  if (r.status == 200 && r.body == http::body_kind::content_length) {
    put(key, r.content_length);
  } else if (r.status == 200 && method == "HEAD") {
    std::uint64_t n = 0;
    if (parse_uint(r.find("content-length"), n)) put(key, n);
  } else if (r.status == 206) {
    std::uint64_t total = 0, first = 0, last = 0;
    if (parse_content_range(r.find("content-range"), first, last, &total) && total > 0)
      put(key, total);
  }
}

double expected_bytes(std::string_view method, std::string_view range,
                      std::optional<std::uint64_t> body, std::optional<std::uint64_t> known) {
  if (method == "PUT" || method == "POST")
    return body ? static_cast<double>(*body) : unknown_object_bytes;
  if (method != "GET") return 0;
  if (!range.empty())
    if (auto n = range_bytes(range, known)) return *n;
  return known ? static_cast<double>(*known) : unknown_object_bytes;
}

}  // namespace meridian::proxy
