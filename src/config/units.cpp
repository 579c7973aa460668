#include "meridian/config/units.hpp"

#include <charconv>

namespace meridian::config {
namespace {
// Splits "123.5ms" into number and suffix; the number may have a fraction.
bool split_number(std::string_view text, double& value, std::string_view& suffix) {
  std::size_t i = 0;
  while (i < text.size() && ((text[i] >= '0' && text[i] <= '9') || text[i] == '.')) ++i;
  if (i == 0) return false;
  auto res = std::from_chars(text.data(), text.data() + i, value);
  if (res.ec != std::errc{} || res.ptr != text.data() + i) return false;
  suffix = text.substr(i);
  while (!suffix.empty() && suffix.front() == ' ') suffix.remove_prefix(1);
  return true;
}
}  // namespace

std::optional<duration> parse_duration(std::string_view text) {
  double v = 0;
  std::string_view suffix;
  if (!split_number(text, v, suffix)) return std::nullopt;
  double ns_per = 0;
  if (suffix == "ns")
    ns_per = 1;
  else if (suffix == "us")
    ns_per = 1e3;
  else if (suffix == "ms")
    ns_per = 1e6;
  else if (suffix == "s")
    ns_per = 1e9;
  else if (suffix == "m")
    ns_per = 60e9;
  else if (suffix == "h")
    ns_per = 3600e9;
  else if (suffix.empty() && v == 0)
    ns_per = 1;
  else
    return std::nullopt;
  return duration(static_cast<std::int64_t>(v * ns_per));
}

std::optional<std::uint64_t> parse_size(std::string_view text) {
  double v = 0;
  std::string_view suffix;
  if (!split_number(text, v, suffix)) return std::nullopt;
  double mul = 0;
  if (suffix.empty() || suffix == "B")
    mul = 1;
  else if (suffix == "KiB")
    mul = 1024.0;
  else if (suffix == "MiB")
    mul = 1024.0 * 1024;
  else if (suffix == "GiB")
    mul = 1024.0 * 1024 * 1024;
  else if (suffix == "KB" || suffix == "kB")
    mul = 1e3;
  else if (suffix == "MB")
    mul = 1e6;
  else if (suffix == "GB")
    mul = 1e9;
  else
    return std::nullopt;
  return static_cast<std::uint64_t>(v * mul);
}

std::optional<host_port> parse_host_port(std::string_view text) {
  host_port out;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return std::nullopt;
    out.host = std::string(text.substr(1, close - 1));
    port_text = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos || colon == 0) return std::nullopt;
    out.host = std::string(text.substr(0, colon));
    if (out.host.find(':') != std::string::npos) return std::nullopt;  // v6 needs brackets
    port_text = text.substr(colon + 1);
  }
  unsigned port = 0;
  auto res = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || res.ec != std::errc{} ||
      res.ptr != port_text.data() + port_text.size() || port > 65535)
    return std::nullopt;
  out.port = static_cast<std::uint16_t>(port);
  return out;
}

}  // namespace meridian::config
