// load_config's validation and derived values (startup only).
#include <string>
#include <string_view>

#include "common/net.hpp"
#include "load/load.hpp"

namespace meridian::loadtest {

std::string load_config::finalize() {
  std::string_view u = url;
  if (!u.starts_with("http://")) return "--url must start with http:// (got '" + url + "')";
  u.remove_prefix(7);
  auto slash = u.find('/');
  std::string_view hostport = u.substr(0, slash);
  path = slash == std::string_view::npos ? "/" : std::string(u.substr(slash));
  auto colon = hostport.rfind(':');
  host = std::string(hostport.substr(0, colon));
  if (host == "localhost") host = "127.0.0.1";
  if (colon == std::string_view::npos)
    port = 80;
  else {
    auto p = parse_int(hostport.substr(colon + 1));
    if (!p || *p <= 0 || *p > 65535) return "bad port in --url";
    port = static_cast<std::uint16_t>(*p);
  }
  error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec) return "--url host must be an IP literal such as 127.0.0.1";
  if (!addr.is_loopback() && !allow_remote)
    return "--url must point at a loopback address (127.0.0.0/8 or ::1); add --allow-remote to "
           "load a server off this machine";
  for (const auto& h : headers) {
    auto colon = h.find(':');
    bool ok = colon != std::string::npos && colon > 0 &&
              h.find_first_of("\r\n") == std::string::npos && h.find_first_of(" \t") > colon;
    if (!ok) return "--header wants \"Name: value\" (got '" + h + "')";
  }
  if (api != openai_api::none && path == "/")
    path = api == openai_api::chat          ? "/v1/chat/completions"
           : api == openai_api::completions ? "/v1/completions"
                                            : "/v1/embeddings";
  if (conversations < 0) return "--conversations must be >= 0";
  if (conversations > 0) {
    if (api != openai_api::chat) return "--conversations needs --openai chat";
    if (system_prompts < 1 || system_tokens < 0 || turns < 1)
      return "--system-prompts and --turns must be >= 1, --system-tokens >= 0";
  }
  if (connections < 1) return "--connections must be >= 1";
  if (threads < 1) threads = 1;
  if (threads > connections) threads = connections;
  if (duration_s <= 0 && !(closed && max_requests)) return "--duration must be > 0";
  if (duration_s <= 0) duration_s = 3600;
  if (!closed && rate <= 0 && profile_points.empty())
    return "open-loop mode needs --rate > 0 (or use --closed)";
  if (timeout_s <= 0) return "--timeout must be > 0";
  if (max_pending < 1) max_pending = 1;
  std::string err;
  if (!slo_text.empty()) {
    auto s = parse_slos(slo_text, err);
    if (!s) return err;
    slos = std::move(*s);
  }
  if (!profile_points.empty() && !rate_profile::from_points(profile_points, duration_s))
    return "bad rate profile";
  return {};
}

rate_profile load_config::profile() const {
  if (closed) return rate_profile::constant(0, duration_s);
  if (!profile_points.empty()) return *rate_profile::from_points(profile_points, duration_s);
  return rate_profile::constant(rate, duration_s);
}

}  // namespace meridian::loadtest
