#include "nvgrace/acpi/table.hpp"

#include <numeric>

#include <fmt/format.h>

namespace nvgrace::acpi {
namespace {

std::uint32_t le32(std::span<const std::uint8_t> b, std::size_t off) {
  return static_cast<std::uint32_t>(b[off]) | static_cast<std::uint32_t>(b[off + 1]) << 8 |
         static_cast<std::uint32_t>(b[off + 2]) << 16 | static_cast<std::uint32_t>(b[off + 3]) << 24;
}

// A header text field as it may be printed: trailing NULs and blanks dropped,
// bytes outside printable ASCII escaped as \xNN, so that a table of random
// bytes cannot put a newline or a terminal escape into a message.
std::string text(std::span<const std::uint8_t> b, std::size_t off, std::size_t n) {
  std::size_t len = n;
  while (len > 0 && (b[off + len - 1] == '\0' || b[off + len - 1] == ' ')) --len;
  std::string s;
  for (std::size_t i = 0; i < len; ++i) {
    const std::uint8_t c = b[off + i];
    if (c >= 0x20 && c < 0x7F && c != '\\')
      s.push_back(static_cast<char>(c));
    else
      s += fmt::format("\\x{:02x}", c);
  }
  return s;
}

}  // namespace

Result<Table> parse_table(std::span<const std::uint8_t> bytes, std::string_view source) {
  if (bytes.size() < kTableHeaderSize)
    return fail("{}: truncated at byte offset {}: the table header needs {} bytes", source, bytes.size(),
                kTableHeaderSize);
  Table t;
  t.source = std::string(source);
  t.header.signature = text(bytes, 0, 4);
  t.header.length = le32(bytes, 4);
  t.header.revision = bytes[8];
  t.header.checksum = bytes[9];
  t.header.oem_id = text(bytes, 10, 6);
  t.header.oem_table_id = text(bytes, 16, 8);
  t.header.oem_revision = le32(bytes, 24);
  if (t.header.length < kTableHeaderSize)
    return fail("{}: length field {} at byte offset 4 is smaller than the {}-byte header", source, t.header.length,
                kTableHeaderSize);
  if (bytes.size() < t.header.length)
    return fail("{} ({}): truncated at byte offset {}: its header says {} bytes", source, t.header.signature,
                bytes.size(), t.header.length);
  t.bytes.assign(bytes.begin(), bytes.begin() + t.header.length);
  // All bytes of a table, checksum included, sum to zero modulo 256.
  const auto sum = std::accumulate(t.bytes.begin(), t.bytes.end(), 0u);
  t.checksum_ok = (sum & 0xFF) == 0;
  return t;
}

}  // namespace nvgrace::acpi
