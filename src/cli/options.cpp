#include "options.hpp"

#include <charconv>
#include <sstream>

#include <fmt/format.h>

namespace nvgrace::cli {

CLI::Validator integer_in(long long min, long long max, std::string unit) {
  auto check = [min, max, unit](std::string& text) -> std::string {
    long long v = 0;
    const char* end = text.data() + text.size();
    auto [p, ec] = std::from_chars(text.data(), end, v);
    if (text.empty() || ec == std::errc::invalid_argument || p != end)
      return fmt::format("'{}' is not a number (give {}..{}{})", text, min, max, unit.empty() ? "" : " " + unit);
    if (ec == std::errc::result_out_of_range || v < min || v > max)
      return fmt::format("{} is outside {}..{}{}", text, min, max, unit.empty() ? "" : " (" + unit + ")");
    return {};
  };
  return CLI::Validator(check, fmt::format("{}..{}", min, max), "integer_in");
}

Result<std::string> parse_slot(std::string_view text) {
  auto bad = [&] {
    return fail("'{}' is not a PCI slot: give [[DDDD:]BB:]DD.F in hex, e.g. 01:00.0 or 0009:01:00.0", text);
  };
  auto hex = [](std::string_view s, std::size_t digits, unsigned& out) {
    if (s.size() != digits) return false;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out, 16);
    return ec == std::errc() && p == s.data() + s.size();
  };
  const auto dot = text.rfind('.');
  if (dot == std::string_view::npos) return bad();
  unsigned fn = 0, dev = 0, bus = 0, domain = 0;
  if (!hex(text.substr(dot + 1), 1, fn) || fn > 7) return bad();
  std::string_view head = text.substr(0, dot);
  const auto c2 = head.rfind(':');
  if (!hex(head.substr(c2 == std::string_view::npos ? 0 : c2 + 1), 2, dev) || dev > 0x1f) return bad();
  if (c2 != std::string_view::npos) {
    head = head.substr(0, c2);
    const auto c1 = head.rfind(':');
    if (!hex(head.substr(c1 == std::string_view::npos ? 0 : c1 + 1), 2, bus)) return bad();
    if (c1 != std::string_view::npos && !hex(head.substr(0, c1), 4, domain)) return bad();
  }
  return std::string(text);
}

std::string wrap_text(std::string_view text, std::size_t width) {
  std::string out;
  std::size_t col = 0;
  while (!text.empty()) {
    if (text.front() == '\n') {
      out += '\n';
      col = 0;
      text.remove_prefix(1);
      continue;
    }
    const auto stop = text.find_first_of(" \n");
    const std::string_view word = text.substr(0, stop);
    text = stop == std::string_view::npos ? std::string_view{} : text.substr(stop);
    if (!text.empty() && text.front() == ' ') text.remove_prefix(1);
    if (col > 0 && col + 1 + word.size() > width) {
      out += '\n';
      col = 0;
    } else if (col > 0) {
      out += ' ';
      ++col;
    }
    out += word;
    col += word.size();
  }
  return out;
}

HelpFormatter::HelpFormatter() { column_width(30); }

std::string HelpFormatter::make_option_opts(const CLI::Option* opt) const {
  if (opt->get_type_size() == 0) return {};
  std::string out = " " + opt->get_type_name();
  if (opt->get_expected_max() == CLI::detail::expected_max_vector_size) out += " ...";
  return out;
}

std::string HelpFormatter::make_option_desc(const CLI::Option* opt) const {
  std::string desc = opt->get_description();
  if (opt->get_required()) desc += " (required)";
  if (!opt->get_default_str().empty()) desc += fmt::format(" (default: {})", opt->get_default_str());
  return wrap_text(desc, kHelpWidth - column_width_);
}

std::string HelpFormatter::make_description(const CLI::App* app) const {
  const std::string desc = app->get_description();
  return desc.empty() ? std::string{} : wrap_text(desc, kHelpWidth) + "\n";
}

std::string HelpFormatter::make_subcommand(const CLI::App* sub) const {
  std::stringstream out;
  CLI::detail::format_help(out, sub->get_display_name(true),
                           wrap_text(sub->get_description(), kHelpWidth - column_width_), column_width_);
  return out.str();
}

}  // namespace nvgrace::cli
