// Layout model tests: nvgrace-model.md R5, R7-R10.
#include <catch2/catch.hpp>

#include "nvgrace/pciemu/layout.hpp"

using namespace nvgrace;
using namespace nvgrace::pciemu;

namespace {
Layout ok(std::uint64_t base, std::uint64_t size, bool bug) {
  auto r = compute_layout({base, size, bug});
  INFO((r ? std::string() : r.error().message));
  REQUIRE(r.has_value());
  return *r;
}
std::string err(std::uint64_t base, std::uint64_t size, bool bug, unsigned bits = 64) {
  auto r = compute_layout({base, size, bug, bits});
  REQUIRE_FALSE(r.has_value());
  return r.error().message;
}
}  // namespace

TEST_CASE("R10 worked example: 96 GiB with the MIG bug") {
  auto l = ok(0x400000000000, 96 * GiB, true);
  REQUIRE(l.usemem);
  REQUIRE(l.resmem);
  CHECK(l.usemem->bar_index == BarIndex{4});
  CHECK(l.usemem->host_base == 0x400000000000);
  CHECK(l.usemem->length == 95 * GiB);
  CHECK(l.usemem->bar_size == 128 * GiB);
  CHECK(l.usemem->tail() == 33 * GiB);
  CHECK(l.usemem->cacheable);
  CHECK(l.resmem->bar_index == BarIndex{2});
  CHECK(l.resmem->host_base == 0x400000000000 + 95 * GiB);
  CHECK(l.resmem->length == 1 * GiB);
  CHECK(l.resmem->bar_size == 1 * GiB);
  CHECK(l.resmem->tail() == 0);
  CHECK_FALSE(l.resmem->cacheable);  // R19
}

TEST_CASE("R10 worked example: 0x17E4F00000 with the MIG bug rounds usemem to 512 MiB") {
  auto l = ok(0x400000000000, 0x17E4F00000, true);
  CHECK(l.usemem->length == 0x17A0000000);
  CHECK(l.usemem->bar_size == 0x2000000000);  // R8: taken before rounding
  CHECK(l.resmem->host_base == 0x4017A0000000);
  CHECK(l.resmem->length == 0x44F00000);     // R9: 1 GiB plus the remainder
  CHECK(l.resmem->bar_size == 0x80000000);
  CHECK(l.resmem->tail() == 0x80000000 - 0x44F00000);
}

TEST_CASE("R10: without the MIG bug there is no resmem and usemem is not rounded") {
  auto l = ok(0x400000000000, 186 * GiB, false);
  CHECK(l.usemem->length == 186 * GiB);
  CHECK(l.usemem->bar_size == 256 * GiB);
  CHECK_FALSE(l.resmem);
  auto odd = ok(0x1000, 0x17E4F00000, false);
  CHECK(odd.usemem->length == 0x17E4F00000);
}

TEST_CASE("R8: an exact power of two keeps its own BAR size") {
  auto nobug = ok(0, 128 * GiB, false);
  CHECK(nobug.usemem->bar_size == 128 * GiB);
  CHECK(nobug.usemem->tail() == 0);
  // With the bug usemem is 128 GiB + 1 GiB - 1 GiB: exactly a power of two again.
  auto bug = ok(0, 129 * GiB, true);
  CHECK(bug.usemem->length == 128 * GiB);
  CHECK(bug.usemem->bar_size == 128 * GiB);
  CHECK(bug.resmem->length == 1 * GiB);
}

TEST_CASE("R8: a size just above a power of two doubles the BAR") {
  auto l = ok(0, 64 * GiB + 1, false);
  CHECK(l.usemem->bar_size == 128 * GiB);
  CHECK(l.usemem->tail() == 64 * GiB - 1);
  auto bug = ok(0, 65 * GiB + 4096, true);
  CHECK(bug.usemem->bar_size == 128 * GiB);
  CHECK(bug.usemem->length == 64 * GiB);
  CHECK(bug.resmem->length == 1 * GiB + 4096);
  CHECK(bug.resmem->bar_size == 2 * GiB);
}

TEST_CASE("R9: 1.5 GiB - 1 with the bug rounds usemem to 0 and is an error") {
  auto msg = err(0, 1536 * MiB - 1, true);
  CHECK(msg.find("rounds down to 0") != std::string::npos);
  CHECK(msg.find("R9") != std::string::npos);
}

TEST_CASE("R9: 1.5 GiB with the bug gives 512 MiB usemem and 1 GiB resmem") {
  auto l = ok(0, 1536 * MiB, true);
  CHECK(l.usemem->length == 512 * MiB);
  CHECK(l.usemem->bar_size == 512 * MiB);
  CHECK(l.resmem->length == 1 * GiB);
  CHECK(l.resmem->host_base == 512 * MiB);
}

TEST_CASE("R7: a size at or below the 1 GiB resmem is an error with the bug") {
  CHECK(err(0, 1 * GiB, true).find("leaves no usemem") != std::string::npos);
  CHECK(err(0, 512 * MiB, true).find("smaller than") != std::string::npos);
}

TEST_CASE("2^63 bytes fit and one byte more needs a BAR past 2^63") {
  auto l = ok(0, 1ull << 63, false);
  CHECK(l.usemem->bar_size == 1ull << 63);
  auto bug = ok(0, 1ull << 63, true);
  CHECK(bug.usemem->bar_size == 1ull << 63);
  CHECK(bug.usemem->length == (1ull << 63) - 1 * GiB);
  CHECK(err(0, (1ull << 63) + 1, false).find("larger than 2^63") != std::string::npos);
}

TEST_CASE("R5: size 0 is passthrough with a reason, not an error") {
  auto l = ok(0x400000000000, 0, true);
  CHECK(l.passthrough);
  CHECK(l.reason.find("C2C link not up") != std::string::npos);
  CHECK_FALSE(l.usemem);
  CHECK_FALSE(l.resmem);
}

TEST_CASE("a base near 2^64: wrapping is an error, above the PA range is passthrough") {
  const std::uint64_t base = ~0ull - 4 * GiB + 1;
  CHECK(err(base, 96 * GiB, true).find("wraps") != std::string::npos);
  // The last byte exactly at 2^64 - 1 does not wrap.
  auto edge = ok(~0ull - 2 * GiB + 1, 2 * GiB, false);
  CHECK(edge.usemem->length == 2 * GiB);
  // R5: a base outside a 48-bit physical address space is passthrough.
  auto r = compute_layout({base, 96 * GiB, true, 48});
  REQUIRE(r.has_value());
  CHECK(r->passthrough);
  CHECK(r->reason.find("48-bit") != std::string::npos);
  // Memory that starts inside and ends outside is refused.
  CHECK(err((1ull << 48) - GiB, 2 * GiB, false, 48).find("ends above") != std::string::npos);
  CHECK(err(0, GiB, false, 0).find("outside 1..64") != std::string::npos);
}
