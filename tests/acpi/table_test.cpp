// ACPI table header checks (issue: ACPI tables, item 1).
#include <catch2/catch.hpp>

#include <cstring>
#include <vector>

#include "nvgrace/acpi/table.hpp"

using namespace nvgrace::acpi;

namespace {
std::vector<std::uint8_t> make_table(const char* sig, std::size_t body_len) {
  std::vector<std::uint8_t> t(kTableHeaderSize + body_len, 0);
  std::memcpy(t.data(), sig, 4);
  const auto len = static_cast<std::uint32_t>(t.size());
  for (int i = 0; i < 4; ++i) t[4 + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(len >> (8 * i));
  t[8] = 2;
  std::memcpy(t.data() + 10, "NVIDIA", 6);
  std::memcpy(t.data() + 16, "GRACE   ", 8);
  for (std::size_t i = kTableHeaderSize; i < t.size(); ++i) t[i] = static_cast<std::uint8_t>(i);
  unsigned sum = 0;
  for (auto b : t) sum += b;
  t[9] = static_cast<std::uint8_t>(0x100 - (sum & 0xFF));
  return t;
}
}  // namespace

TEST_CASE("a well-formed table parses with its header fields and a good checksum") {
  auto bytes = make_table("DSDT", 100);
  auto t = parse_table(bytes, "DSDT");
  REQUIRE(t.has_value());
  CHECK(t->header.signature == "DSDT");
  CHECK(t->header.length == 136);
  CHECK(t->header.revision == 2);
  CHECK(t->header.oem_id == "NVIDIA");
  CHECK(t->header.oem_table_id == "GRACE");
  CHECK(t->checksum_ok);
  CHECK(t->body().size() == 100);
}

TEST_CASE("a bad checksum is a warning, not an error") {
  auto bytes = make_table("SSDT", 10);
  bytes[20] ^= 0x55;
  auto t = parse_table(bytes, "SSDT1");
  REQUIRE(t.has_value());
  CHECK_FALSE(t->checksum_ok);
}

TEST_CASE("a truncated table is an error naming the table and the byte offset") {
  auto bytes = make_table("SSDT", 64);
  bytes.resize(80);
  auto t = parse_table(bytes, "SSDT3");
  REQUIRE_FALSE(t.has_value());
  CHECK(t.error().message == "SSDT3 (SSDT): truncated at byte offset 80: its header says 100 bytes");
  auto tiny = parse_table(std::span(bytes).first(20), "x.aml");
  REQUIRE_FALSE(tiny.has_value());
  CHECK(tiny.error().message.find("x.aml: truncated at byte offset 20") == 0);
}

TEST_CASE("a length field smaller than the header is an error") {
  auto bytes = make_table("DSDT", 8);
  bytes[4] = 10;
  bytes[5] = bytes[6] = bytes[7] = 0;
  auto t = parse_table(bytes, "DSDT");
  REQUIRE_FALSE(t.has_value());
  CHECK(t.error().message.find("smaller than the 36-byte header") != std::string::npos);
}
