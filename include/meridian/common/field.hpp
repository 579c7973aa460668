// A header field as views into a buffer someone else owns: the shape the HTTP parser produces
// and the router matches on, so neither needs the other's types. Plain value; any thread.
#pragma once

#include <string_view>

namespace meridian::common {

struct field {
  std::string_view name;
  std::string_view value;
};

}  // namespace meridian::common
