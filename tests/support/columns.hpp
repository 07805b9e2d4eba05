// The lines of a command's output wider than a terminal, for the tests that
// hold help text and reports to 80 columns: CHECK(wider_than(out, 80).empty())
// shows the offending lines when it fails.
#pragma once

#include <string>
#include <string_view>
#include <vector>

inline std::vector<std::string> wider_than(std::string_view text, std::size_t width) {
  std::vector<std::string> out;
  while (!text.empty()) {
    const auto end = text.find('\n');
    const auto line = text.substr(0, end);
    if (line.size() > width) out.emplace_back(line);
    text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
  }
  return out;
}
