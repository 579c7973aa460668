// Request-target forms an intermediary accepts (RFC 9112 §3.2): origin-form, absolute-form
// (http/https, forwarded as origin-form) and OPTIONS's asterisk-form. Pure functions; any thread.
#pragma once

#include <string_view>

namespace meridian::http {

struct target_parts {
  std::string_view path;       // origin-form, query included (what goes upstream)
  std::string_view authority;  // from an absolute-form target, else empty
};

// absolute-path [ "?" query ]: anything a backend could read differently (a fragment, a stray
// '%', raw quotes or brackets, spaces or controls) is refused.
bool valid_origin_form(std::string_view target);

// Checks `target` and splits it; false when it is none of the accepted forms.
bool parse_target(std::string_view target, std::string_view method, target_parts& out);

}  // namespace meridian::http
