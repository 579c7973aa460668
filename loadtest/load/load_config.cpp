// load_config's validation and derived values (startup only).
#include <boost/json.hpp>

#include <fstream>
#include <iterator>
#include <string>
#include <string_view>

#include "common/net.hpp"
#include "load/load.hpp"

namespace meridian::loadtest {

std::string load_config::finalize() {
  std::string_view u = url;
  tls = u.starts_with("https://");
  if (!tls && !u.starts_with("http://"))
    return "--url must start with http:// or https:// (got '" + url + "')";
  u.remove_prefix(tls ? 8 : 7);
  auto slash = u.find('/');
  std::string_view hostport = u.substr(0, slash);
  path = slash == std::string_view::npos ? "/" : std::string(u.substr(slash));
  auto colon = hostport.rfind(':');
  host = std::string(hostport.substr(0, colon));
  if (host == "localhost") host = "127.0.0.1";
  if (colon == std::string_view::npos)
    port = tls ? 443 : 80;
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
  if (api == openai_api::kserve && !http2) return "--kserve needs --http2 (gRPC is HTTP/2)";
  if (api == openai_api::kserve && path == "/")
    path = stream ? "/inference.GRPCInferenceService/ModelStreamInfer"
                  : "/inference.GRPCInferenceService/ModelInfer";
  if (api != openai_api::none && path == "/")
    path = api == openai_api::chat          ? "/v1/chat/completions"
           : api == openai_api::completions ? "/v1/completions"
                                            : "/v1/embeddings";
  if (streams < 1) return "--streams must be >= 1";
  if (streams > 1 && !http2) return "--streams needs --http2 (HTTP/1.1 carries one at a time)";
  if (http2 && new_connection) return "--new-connection is for HTTP/1.1 (not with --http2)";
  if (http2 && storage) return "--storage runs over HTTP/1.1 (not with --http2)";
  if (conversations < 0) return "--conversations must be >= 0";
  if (conversations > 0) {
    if (api != openai_api::chat) return "--conversations needs --openai chat";
    if (system_prompts < 1 || system_tokens < 0 || turns < 1)
      return "--system-prompts and --turns must be >= 1, --system-tokens >= 0";
  }
  if (tls && cacert.empty() && !insecure)
    return "an https:// target needs --cacert FILE (verify the server) or --insecure (do not)";
  if (!tls && (!cacert.empty() || insecure || !sni.empty()))
    return "--cacert, --insecure and --sni need an https:// --url";
  if (!cacert.empty() && insecure) return "--cacert and --insecure exclude each other";
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
  if (!dataset_path.empty()) {
    if (api != openai_api::chat && api != openai_api::completions)
      return "--dataset needs --openai chat or completions";
    if (conversations > 0) return "--dataset and --conversations exclude each other";
    std::string why;
    auto d = load_sharegpt(dataset_path, why);
    if (!d) return why;
    dataset = std::move(d);
  }
  if (backend_header.empty()) return "--backend-header needs a header name";
  return {};
}

std::shared_ptr<const std::vector<load_config::dataset_entry>> load_sharegpt(
    const std::string& path, std::string& why) {
  std::ifstream f(path);
  if (!f) {
    why = "--dataset: cannot read " + path;
    return nullptr;
  }
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  boost::system::error_code ec;
  auto v = boost::json::parse(text, ec);
  if (ec || !v.is_array()) {
    why = "--dataset: " + path + " is not a JSON array of ShareGPT conversations";
    return nullptr;
  }
  auto out = std::make_shared<std::vector<load_config::dataset_entry>>();
  for (const auto& item : v.as_array()) {
    const auto* obj = item.if_object();
    const auto* conv = obj ? obj->if_contains("conversations") : nullptr;
    if (!conv || !conv->is_array() || conv->as_array().size() < 2) continue;
    const auto& turns = conv->as_array();
    const auto* q = turns[0].if_object();
    const auto* a = turns[1].if_object();
    if (!q || !a || !q->if_contains("value") || !a->if_contains("value")) continue;
    if (!(*q).at("value").is_string() || !(*a).at("value").is_string()) continue;
    const auto& prompt = (*q).at("value").as_string();
    const auto& answer = (*a).at("value").as_string();
    // vLLM's benchmark filter: prompts and answers of at least 4 tokens, a prompt of at most
    // 1024 and both together at most 2048 (tokens counted as bytes / 4 here).
    int p = static_cast<int>(prompt.size() / 4), o = static_cast<int>(answer.size() / 4);
    if (p < 4 || o < 4 || p > 1024 || p + o > 2048) continue;
    auto quoted = boost::json::serialize(boost::json::value(prompt));
    out->push_back({quoted.substr(1, quoted.size() - 2), p, o});
  }
  if (out->empty()) {
    why = "--dataset: " + path + " holds no usable conversation (a human turn and an answer)";
    return nullptr;
  }
  return out;
}

std::optional<std::vector<rate_profile::point>> parse_stages(std::string_view s, double& total_s) {
  std::vector<rate_profile::point> out;
  total_s = 0;
  double before = 0;  // the rate the previous stage ended at
  while (!s.empty()) {
    auto comma = s.find(',');
    auto stage = s.substr(0, comma);
    s = comma == std::string_view::npos ? std::string_view{} : s.substr(comma + 1);
    auto at = stage.find('@');
    if (at == std::string_view::npos) return std::nullopt;
    bool ramp = stage.ends_with('~');
    auto d = parse_duration(stage.substr(0, at));
    auto r = parse_double(stage.substr(at + 1, stage.size() - at - 1 - (ramp ? 1 : 0)));
    if (!d || !r || *r < 0 || d->count() <= 0) return std::nullopt;
    double len = static_cast<double>(d->count()) / 1e9;
    // A step holds its rate from its start; a ramp starts from the rate before and reaches its
    // own at its end.
    if (ramp) {
      out.push_back({total_s, before, false});
      out.push_back({total_s + len, *r, true});
    } else {
      out.push_back({total_s, *r, false});
    }
    before = *r;
    total_s += len;
  }
  if (out.empty()) return std::nullopt;
  return out;
}

rate_profile load_config::profile() const {
  if (closed) return rate_profile::constant(0, duration_s);
  if (!profile_points.empty()) return *rate_profile::from_points(profile_points, duration_s);
  return rate_profile::constant(rate, duration_s);
}

}  // namespace meridian::loadtest
