// Option parsing every command shares: number validators that say "not a
// number" and name the range, PCI slot names, and a help formatter that keeps
// every line inside 80 columns.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <CLI/CLI.hpp>

#include "nvgrace/common/result.hpp"

namespace nvgrace::cli {

// Help text is wrapped to this width (README: help fits 80 columns).
inline constexpr std::size_t kHelpWidth = 80;

// An integer option in [min, max]. "abc" -> "'abc' is not a number";
// "-1" -> "-1 is outside 1..3600000 (milliseconds)". `unit` names what the
// number counts, for the message.
[[nodiscard]] CLI::Validator integer_in(long long min, long long max, std::string unit = {});

// A PCI slot as lspci prints it: [[DDDD:]BB:]DD.F with hex digits, device
// 00..1f, function 0..7. Returns the text unchanged when valid.
[[nodiscard]] Result<std::string> parse_slot(std::string_view text);

// CLI11's formatter with descriptions word-wrapped to kHelpWidth, option
// columns without CLI11's "Excludes:/Needs:" clutter (the descriptions say
// it) and defaults written into the description.
class HelpFormatter final : public CLI::Formatter {
 public:
  HelpFormatter();
  std::string make_option_opts(const CLI::Option* opt) const override;
  std::string make_option_desc(const CLI::Option* opt) const override;
  std::string make_description(const CLI::App* app) const override;
  std::string make_subcommand(const CLI::App* sub) const override;
};

// Wraps `text` at spaces so that `indent + line` fits `width`; lines after the
// first are not indented here (CLI11 indents continuation lines itself).
[[nodiscard]] std::string wrap_text(std::string_view text, std::size_t width);

}  // namespace nvgrace::cli
