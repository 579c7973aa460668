#include "load/storage_setup.hpp"

#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>
#include <array>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/http_parser.hpp"
#include "common/net.hpp"

namespace meridian::loadtest::runner {

void storage_setup(const load_config& cfg) {
  asio::io_context ctx;
  tcp::socket s(ctx);
  s.connect({asio::ip::make_address(cfg.host), cfg.port});
  timeval tv{10, 0};
  ::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string body(static_cast<std::size_t>(cfg.object_size), 'x');
  std::string prefix = cfg.path;
  if (prefix.empty() || prefix.back() != '/') prefix += '/';
  std::vector<char> buf(64 * 1024);
  for (int i = 0; i < cfg.objects; ++i) {
    std::string req = "PUT " + prefix + "obj-" + std::to_string(i) +
                      " HTTP/1.1\r\nHost: " + cfg.host +
                      "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n";
    std::array<asio::const_buffer, 2> b{asio::buffer(req), asio::buffer(body)};
    asio::write(s, b);
    std::string resp;
    while (true) {
      auto n = s.read_some(asio::buffer(buf));
      resp.append(buf.data(), n);
      response_head h;
      long hl = parse_response_head(resp, h);
      if (hl < 0) throw std::runtime_error("bad response during storage setup");
      if (hl > 0 && resp.size() >=
                        static_cast<std::size_t>(hl) +
                            static_cast<std::size_t>(std::max<std::int64_t>(0, h.content_length))) {
        if (h.status >= 300)
          throw std::runtime_error("storage setup PUT failed with status " +
                                   std::to_string(h.status));
        break;
      }
    }
  }
}

}  // namespace meridian::loadtest::runner
