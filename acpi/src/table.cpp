#include "nvgrace/acpi/table.hpp"

#include <numeric>

namespace nvgrace::acpi {
namespace {

std::uint32_t le32(std::span<const std::uint8_t> b, std::size_t off) {
  return static_cast<std::uint32_t>(b[off]) | static_cast<std::uint32_t>(b[off + 1]) << 8 |
         static_cast<std::uint32_t>(b[off + 2]) << 16 | static_cast<std::uint32_t>(b[off + 3]) << 24;
}

std::string text(std::span<const std::uint8_t> b, std::size_t off, std::size_t n) {
  std::string s(reinterpret_cast<const char*>(b.data() + off), n);
  while (!s.empty() && (s.back() == '\0' || s.back() == ' ')) s.pop_back();
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
