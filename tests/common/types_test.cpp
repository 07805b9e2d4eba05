// The distinct types of common/types.hpp: addresses that cannot be mixed up,
// one BDF parser and formatter.
#include <catch2/catch.hpp>

#include <type_traits>

#include "nvgrace/common/types.hpp"

using namespace nvgrace;

// Compile-time: no address converts to or from a plain number or another kind.
static_assert(!std::is_convertible_v<std::uint64_t, GuestPhysAddr>);
static_assert(!std::is_convertible_v<GuestPhysAddr, std::uint64_t>);
static_assert(!std::is_convertible_v<GuestPhysAddr, Iova>);
static_assert(!std::is_convertible_v<Iova, GuestPhysAddr>);
static_assert(!std::is_convertible_v<std::uint64_t, HostVirtAddr>);
static_assert(!std::is_convertible_v<RegionIndex, BarIndex>);
static_assert(!std::is_convertible_v<unsigned, RegionIndex>);
static_assert(!std::is_convertible_v<unsigned, ConfigOffset>);

TEST_CASE("addresses: address + bytes, address - address, ordering") {
  const GuestPhysAddr a{0x10000}, b = a + 0x3000;
  CHECK(b.value() == 0x13000);
  CHECK(b - a == 0x3000);
  CHECK((b - std::uint64_t{0x1000}).value() == 0x12000);
  CHECK(a < b);
  CHECK(fmt::format("{:#x}", b) == "0x13000");
  int x = 0;
  const HostVirtAddr h(&x);
  CHECK(h.ptr<int>() == &x);
  CHECK((h + 4).value() == h.value() + 4);
}

TEST_CASE("Bdf: DDDD:BB:DD.F with segment and bus optional parses with exact digits, formats as sysfs names it") {
  CHECK(Bdf::parse("0009:01:00.0")->to_string() == "0009:01:00.0");
  CHECK(Bdf::parse("01:00.0")->to_string() == "0000:01:00.0");
  CHECK(Bdf::parse("03.0")->to_string() == "0000:00:03.0");
  CHECK(Bdf::parse("00:1F.7")->to_string() == "0000:00:1f.7");
  const auto b = *Bdf::parse("0009:01:02.3");
  CHECK(b.segment() == 9);
  CHECK(b.bus() == 1);
  CHECK(b.device() == 2);
  CHECK(b.function() == 3);
  CHECK(b.devfn() == (2u << 3 | 3));
  CHECK(fmt::format("{}", b) == "0009:01:02.3");
  CHECK(*Bdf::parse("01:00.0") == Bdf(0, 1, 0, 0));
  for (const char* bad : {"", "notaslot", "0:00.0", "00:20.0", "00:00.8", "00:0.0", "00000:00:00.0", "g0:00.0",
                          "00:00.", ".0", "0000:00:00:00.0", "1:2:3.4"}) {
    INFO(bad);
    auto r = Bdf::parse(bad);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().message.find("is not a PCI address") != std::string::npos);
  }
}
