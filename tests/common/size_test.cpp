#include <catch2/catch.hpp>

#include "nvgrace/common/checked.hpp"
#include "nvgrace/common/size.hpp"

using namespace nvgrace;

TEST_CASE("sizes parse as decimal, hex and binary units") {
  CHECK(parse_size("4096").value() == 4096);
  CHECK(parse_size("0x17E4F00000").value() == 0x17E4F00000ull);
  CHECK(parse_size("96GiB").value() == 96 * GiB);
  CHECK(parse_size("96G").value() == 96 * GiB);
  CHECK(parse_size("512 MiB").value() == 512 * MiB);
  CHECK(parse_size("2tib").value() == 2 * TiB);
  CHECK(parse_size("0x10K").value() == 16 * KiB);
  CHECK(parse_size("18446744073709551615").value() == ~0ull);
}

TEST_CASE("malformed sizes are errors that quote the input") {
  for (const char* bad : {"", "abc", "-1", "1.5GiB", "12 parsecs", "0x", "96GiBs", "18446744073709551616", "16384PiB"}) {
    auto r = parse_size(bad);
    INFO(bad);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().message.find("invalid size") != std::string::npos);
  }
}

TEST_CASE("16-bit ids parse as hex with or without 0x") {
  CHECK(parse_hex16("0x2342").value() == 0x2342);
  CHECK(parse_hex16("31C2").value() == 0x31C2);
  CHECK_FALSE(parse_hex16("0x12345").has_value());
  CHECK_FALSE(parse_hex16("").has_value());
  CHECK_FALSE(parse_hex16("xyz").has_value());
}

TEST_CASE("sizes format in the largest exact binary unit") {
  CHECK(format_size(96 * GiB) == "96 GiB");
  CHECK(format_size(0x17A0000000ull) == "96768 MiB");
  CHECK(format_size(0x44F00000ull) == "1103 MiB");
  CHECK(format_size(0x1001) == "0x1001");
  CHECK(format_qemu_size(4 * TiB) == "4T");
  CHECK(format_qemu_size(129 * GiB + 16 * MiB) == "132112M");
}

TEST_CASE("checked arithmetic reports overflow") {
  CHECK_FALSE(checked_add(~0ull, 1).has_value());
  CHECK_FALSE(checked_sub(0, 1).has_value());
  CHECK(next_pow2(1).value() == 1);
  CHECK(next_pow2((1ull << 63) + 1) == std::nullopt);
  CHECK(next_pow2(1ull << 63).value() == 1ull << 63);
  CHECK(next_pow2(0) == std::nullopt);
  CHECK(align_up(~0ull, 4096) == std::nullopt);
}
