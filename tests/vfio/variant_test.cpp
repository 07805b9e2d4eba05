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

std::vector<std::uint8_t> config_bytes(vfio::Function& f) {
  std::vector<std::uint8_t> b(pciemu::ConfigSpace::kSize);
  REQUIRE(f.read(vfio::kConfigRegion, 0, b).value() == b.size());
  return b;
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
    // The same writes to both, at every width, across the BAR registers and
    // the rest of the header.
    std::mt19937 rng(1234);
    for (int i = 0; i < 2000; ++i) {
      const std::size_t width = std::size_t{1} << (rng() % 3);
      const std::size_t off = PCI_COMMAND + rng() % (0x40 - PCI_COMMAND - width);
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
  for (unsigned i = 0; i < VFIO_PCI_NUM_REGIONS; ++i) CHECK(f.region_info(RegionIndex{i})->fd == -1);
  std::vector<std::uint8_t> out(8);
  REQUIRE(f.read(vfio::kBar4Region, 0, out).value() == 8);
  CHECK(out == std::vector<std::uint8_t>(8, 0xFF));
}
