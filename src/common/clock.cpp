#include "meridian/common/clock.hpp"

namespace meridian::common {
namespace {
class steady_clock_source final : public clock {
 public:
  time_point now() const override { return std::chrono::steady_clock::now(); }
  bool steady_time() const override { return true; }
};
}  // namespace

const clock& steady() {
  static const steady_clock_source c;
  return c;
}

}  // namespace meridian::common
