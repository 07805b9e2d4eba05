// Parsing and formatting of byte sizes and addresses as people type them.
#pragma once

#include <cctype>
#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "nvgrace/common/checked.hpp"
#include "nvgrace/common/result.hpp"

namespace nvgrace {

// Accepts decimal ("103079215104"), hex ("0x17E4F00000") and a decimal or hex
// number followed by a binary unit: K/KiB, M/MiB, G/GiB, T/TiB, P/PiB
// (case-insensitive, optional space). Rejects signs, fractions, empty input,
// trailing garbage and anything that overflows 64 bits.
[[nodiscard]] inline Result<std::uint64_t> parse_size(std::string_view text) {
  const std::string_view orig = text;
  auto bad = [&](std::string_view why) {
    return fail("invalid size '{}': {} (expected e.g. 4096, 0x1000, 96GiB)", orig, why);
  };
  if (text.empty()) return bad("empty");
  int base = 10;
  if (text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
    base = 16;
    text.remove_prefix(2);
  }
  std::uint64_t value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value, base);
  if (ec == std::errc::result_out_of_range) return bad("does not fit in 64 bits");
  if (ec != std::errc() || ptr == text.data()) return bad("not a number");
  std::string unit;
  for (const char* p = ptr; p != end; ++p) {
    if (*p == ' ' && unit.empty()) continue;
    unit.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(*p))));
  }
  std::uint64_t mult = 1;
  if (unit.empty() || unit == "b") mult = 1;
  else if (unit == "k" || unit == "kib") mult = KiB;
  else if (unit == "m" || unit == "mib") mult = MiB;
  else if (unit == "g" || unit == "gib") mult = GiB;
  else if (unit == "t" || unit == "tib") mult = TiB;
  else if (unit == "p" || unit == "pib") mult = TiB * 1024;
  else return bad(fmt::format("unknown unit '{}'", std::string_view(ptr, static_cast<std::size_t>(end - ptr))));
  auto r = checked_mul(value, mult);
  if (!r) return bad("does not fit in 64 bits");
  return *r;
}

// Parses a 16-bit identifier such as a PCI device id: hex with or without 0x.
[[nodiscard]] inline Result<std::uint16_t> parse_hex16(std::string_view text) {
  const std::string_view orig = text;
  if (text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) text.remove_prefix(2);
  unsigned value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value, 16);
  if (text.empty() || ec != std::errc() || ptr != text.data() + text.size() || value > 0xFFFF)
    return fail("invalid 16-bit hex id '{}' (expected e.g. 0x2342)", orig);
  return static_cast<std::uint16_t>(value);
}

// Parses a 16-bit identifier such as a PCI device id the way sizes are read:
// decimal ("9026") or 0x-hex ("0x2342"). Hex without the 0x prefix is refused
// rather than guessed: "2342" is decimal 2342.
[[nodiscard]] inline Result<std::uint16_t> parse_id16(std::string_view text) {
  const std::string_view orig = text;
  int base = 10;
  if (text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
    base = 16;
    text.remove_prefix(2);
  }
  unsigned value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value, base);
  if (text.empty() || ec == std::errc::invalid_argument || ptr != text.data() + text.size())
    return fail("invalid id '{}': not a number (give decimal, or hex with 0x, e.g. 0x2342)", orig);
  if (ec == std::errc::result_out_of_range || value > 0xFFFF) return fail("invalid id '{}': larger than 0xffff", orig);
  return static_cast<std::uint16_t>(value);
}

// "96 GiB", "512 MiB", "4 KiB", "17 B", or hex when no binary unit divides it.
[[nodiscard]] inline std::string format_size(std::uint64_t bytes) {
  struct Unit { std::uint64_t size; const char* name; };
  static constexpr Unit units[] = {{TiB, "TiB"}, {GiB, "GiB"}, {MiB, "MiB"}, {KiB, "KiB"}};
  if (bytes == 0) return "0";
  for (const auto& u : units)
    if (bytes >= u.size && bytes % u.size == 0) return fmt::format("{} {}", bytes / u.size, u.name);
  return fmt::format("{:#x}", bytes);
}

// Exact size in QEMU's suffix syntax (T, G, M, K), for command lines.
[[nodiscard]] inline std::string format_qemu_size(std::uint64_t bytes) {
  struct Unit { std::uint64_t size; const char* name; };
  static constexpr Unit units[] = {{TiB, "T"}, {GiB, "G"}, {MiB, "M"}, {KiB, "K"}};
  for (const auto& u : units)
    if (bytes >= u.size && bytes % u.size == 0) return fmt::format("{}{}", bytes / u.size, u.name);
  return fmt::format("{}", bytes);
}

}  // namespace nvgrace
