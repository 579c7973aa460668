// Reading one sample out of a Prometheus text exposition, for the metrics tests.
#pragma once

#include <optional>
#include <sstream>
#include <string>

namespace test {

// The value of the sample whose name and labels are exactly `series`, if the text has one.
inline std::optional<double> sample(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 &&
        line[series.size()] == ' ')
      return std::stod(line.substr(series.size() + 1));
  return std::nullopt;
}

}  // namespace test
