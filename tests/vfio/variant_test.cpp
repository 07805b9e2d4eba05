// One variant over any function: the emulated Grace GPU's physical function
// (the host's view, R37) with the variant on top reads exactly as the guest's
// view of the device, and the function under it keeps its own BAR2/BAR4.
#include <catch2/catch.hpp>

#include <linux/pci_regs.h>
#include <linux/vfio.h>

#include <random>

#include "nvgrace/devices/emulated.hpp"
#include "nvgrace/pciemu/config_space.hpp"
#include "nvgrace/pciemu/profiles.hpp"
#include "nvgrace/vfio/region_info.hpp"
#include "nvgrace/vfio/regions.hpp"

using namespace nvgrace;

namespace {

// Dword by dword, as a VMM reads config space: one read of the whole space
// touches both fake BARs' register pairs, and the kernel (so the variant,
// R39) emulates only the first pair in such an access.
std::vector<std::uint8_t> config_bytes(vfio::Function& f) {
  return vfio::config_dump(f, pciemu::ConfigSpace::kSize).value();
}

}  // namespace

TEST_CASE("variant over the emulated host function: every config byte is the guest view's, before and after writes (R11-R15)") {
  for (const auto& p : pciemu::all_profiles()) {
    INFO(p.name);
    devices::EmulatedOptions o;
    o.profile = std::string(p.name);
    auto emu = devices::make_emulated_device(o);
    REQUIRE(emu.has_value());
    auto guest = emu->gpu.config;  // the guest view as one DeviceConfig
    auto& v = *emu->device;
    CHECK(config_bytes(v) == std::vector<std::uint8_t>(guest.space().bytes().begin(), guest.space().bytes().end()));
    // The same writes to both, at every width, naturally aligned as guests
    // make them, across the BAR registers and the rest of the header. (An
    // access across a register pair follows the kernel instead: below.)
    std::mt19937 rng(1234);
    for (int i = 0; i < 2000; ++i) {
      const std::size_t width = std::size_t{1} << (rng() % 3);
      const std::size_t off = (PCI_COMMAND + rng() % (0x40 - PCI_COMMAND - width)) / width * width;
      const std::uint32_t value = static_cast<std::uint32_t>(rng());
      REQUIRE(vfio::config_write(v, ConfigOffset{static_cast<unsigned>(off)}, width, value).has_value());
      REQUIRE(guest.write(off, width, value).has_value());
    }
    CHECK(config_bytes(v) == std::vector<std::uint8_t>(guest.space().bytes().begin(), guest.space().bytes().end()));
  }
}

TEST_CASE("variant over the emulated host function: its regions are the guest view's region table (R16)") {
  for (const auto& p : pciemu::all_profiles()) {
    INFO(p.name);
    devices::EmulatedOptions o;
    o.profile = std::string(p.name);
    auto emu = devices::make_emulated_device(o);
    REQUIRE(emu.has_value());
    const auto table = vfio::region_table(emu->gpu.bars, pciemu::ConfigSpace::kSize);
    for (const auto& want : table) {
      INFO("region " << want.index.value());
      if (want.index.value() == VFIO_PCI_VGA_REGION_INDEX) {
        CHECK(emu->device->region_info(want.index).error().err == EINVAL);  // no VGA device (R39)
        continue;
      }
      const auto got = emu->device->region(want.index).value();
      CHECK(got.size == want.size);
      CHECK(got.flags == want.flags);
      CHECK(got.sparse.size() == want.sparse.size());
      CHECK(got.write_combined == want.write_combined);
    }
  }
}

TEST_CASE("the emulated function alone is the host's view: real BAR2 and BAR4, no fake BARs, no memory (R37)") {
  devices::EmulatedOptions o;
  auto fn = devices::make_emulated_function(o).value();
  auto& f = *fn.function;
  auto size_of = [&](unsigned i) { return vfio::decode_region_info(f.region_info(RegionIndex{i})->bytes)->region.size; };
  CHECK(size_of(0) == 16 * MiB);
  CHECK(size_of(2) == 128 * GiB);
  CHECK(size_of(4) == 32 * MiB);
  // Sizing BAR2 and BAR4 shows the real sizes.
  for (unsigned bar : {2u, 4u}) {
    const unsigned lo = PCI_BASE_ADDRESS_0 + 4 * bar;
    REQUIRE(vfio::config_write(f, ConfigOffset{lo}, 4, 0xFFFFFFFF).has_value());
    REQUIRE(vfio::config_write(f, ConfigOffset{lo + 4}, 4, 0xFFFFFFFF).has_value());
    const std::uint64_t got = *vfio::config_read(f, ConfigOffset{lo}, 4) |
                              std::uint64_t{*vfio::config_read(f, ConfigOffset{lo + 4}, 4)} << 32;
    CHECK((got & ~std::uint64_t{0xF}) == ~(size_of(bar) - 1));
  }
  // Nothing mappable: the GPU memory is not behind any BAR on a Grace host.
  for (unsigned i = 0; i < VFIO_PCI_NUM_REGIONS; ++i) {
    if (i == VFIO_PCI_VGA_REGION_INDEX) {
      // No VGA device: vfio-pci refuses that region's info (R39).
      CHECK(f.region_info(RegionIndex{i}).error().err == EINVAL);
      continue;
    }
    CHECK(f.region_info(RegionIndex{i})->fd == -1);
  }
  std::vector<std::uint8_t> out(8);
  REQUIRE(f.read(vfio::kBar4Region, 0, out).value() == 8);
  CHECK(out == std::vector<std::uint8_t>(8, 0xFF));
}

TEST_CASE("variant: config writes across a fake BAR's register pair are short, as the kernel's (R39)") {
  devices::EmulatedOptions o;
  o.profile = "gh200";
  auto emu = devices::make_emulated_device(o);
  REQUIRE(emu.has_value());
  auto& v = *emu->device;
  const std::uint8_t four[4] = {0xef, 0xcd, 0xab, 0x89};
  // 0x1e..0x21 touches BAR2's pair (0x1e, 0x1f) and BAR4's: only BAR2's two
  // bytes are taken (6.12 and 7.3: the 0x18 window wins).
  CHECK(v.write(vfio::kConfigRegion, 0x1e, four).value() == 2);
  // 0x16..0x19: BAR1's bytes dropped, BAR2's two taken.
  CHECK(v.write(vfio::kConfigRegion, 0x16, four).value() == 2);
  // 0x26..0x29: BAR4's upper bytes, then BAR6's nothing: two.
  CHECK(v.write(vfio::kConfigRegion, 0x26, four).value() == 2);
  // Inside one pair: all of it.
  CHECK(v.write(vfio::kConfigRegion, 0x20, four).value() == 4);
}

TEST_CASE("variant: a resmem access running past the memory is cut at its end, as the kernel's I/O path (R39)") {
  devices::EmulatedOptions o;
  o.profile = "gh200";
  o.mem_size = 0x68000000;  // resmem 1.125 GiB in a 2 GiB BAR2
  auto emu = devices::make_emulated_device(o);
  REQUIRE(emu.has_value());
  auto& v = *emu->device;
  const std::uint64_t resmem = 0x48000000;
  std::vector<std::uint8_t> b(16, 0x5a);
  CHECK(v.write(vfio::kBar2Region, resmem - 8, b).value() == 8);
  CHECK(v.read(vfio::kBar2Region, resmem - 8, b).value() == 8);
  // Wholly past the memory: the whole count, all-ones (R17).
  CHECK(v.read(vfio::kBar2Region, resmem, b).value() == 16);
  CHECK(b == std::vector<std::uint8_t>(16, 0xff));
  // usemem keeps the whole count with all-ones after the memory.
  CHECK(v.read(vfio::kBar4Region, 0x20000000 - 8, b).value() == 16);
  CHECK(std::all_of(b.begin() + 8, b.end(), [](std::uint8_t x) { return x == 0xff; }));
}
