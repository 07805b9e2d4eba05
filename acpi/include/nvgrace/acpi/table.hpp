// An ACPI System Description Table: the 36-byte header every table starts
// with (ACPI 6.5, section 5.2.6), checked for length and checksum.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "nvgrace/common/result.hpp"

namespace nvgrace::acpi {

inline constexpr std::size_t kTableHeaderSize = 36;

struct TableHeader {
  std::string signature;     // "DSDT", "SSDT", ...
  std::uint32_t length = 0;  // whole table, header included
  std::uint8_t revision = 0;
  std::uint8_t checksum = 0;
  std::string oem_id;
  std::string oem_table_id;
  std::uint32_t oem_revision = 0;
};

struct Table {
  std::string source;  // where it came from, for messages: "DSDT", "/tmp/x.aml", "SSDT2"
  TableHeader header;
  std::vector<std::uint8_t> bytes;  // exactly header.length bytes
  bool checksum_ok = true;          // false is a warning, not an error

  // The AML byte stream after the header (DSDT/SSDT).
  [[nodiscard]] std::span<const std::uint8_t> body() const {
    return std::span<const std::uint8_t>(bytes).subspan(kTableHeaderSize);
  }
};

// Parses one table from the start of `bytes`. A table shorter than its header
// or than its own length field is an error naming `source` and the byte
// offset where data ran out; trailing bytes past the length are ignored.
[[nodiscard]] Result<Table> parse_table(std::span<const std::uint8_t> bytes, std::string_view source);

}  // namespace nvgrace::acpi
