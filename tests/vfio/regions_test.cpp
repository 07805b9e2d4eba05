// The VFIO region table: nvgrace-model.md R16.
#include <catch2/catch.hpp>

#include <linux/vfio.h>

#include "nvgrace/pciemu/identity.hpp"
#include "nvgrace/pciemu/layout.hpp"
#include "nvgrace/vfio/regions.hpp"

using namespace nvgrace;

TEST_CASE("R16: GH200 region table has fake BAR2/BAR4 with one sparse area each") {
  auto layout = pciemu::compute_layout({0x400000000000, 96 * GiB, true});
  auto bars = pciemu::visible_bars(*pciemu::find_identity(0x2342), *layout);
  auto regions = vfio::region_table(bars, 4096);
  REQUIRE(regions.size() == VFIO_PCI_NUM_REGIONS);
  const auto& bar4 = regions[VFIO_PCI_BAR4_REGION_INDEX];
  CHECK(bar4.size == 0x2000000000);
  CHECK(bar4.flags == (VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE | VFIO_REGION_INFO_FLAG_MMAP));
  REQUIRE(bar4.sparse.size() == 1);
  CHECK(bar4.sparse[0].offset == 0);
  CHECK(bar4.sparse[0].size == 0x17C0000000);
  const auto& bar2 = regions[VFIO_PCI_BAR2_REGION_INDEX];
  CHECK(bar2.size == 0x40000000);
  REQUIRE(bar2.sparse.size() == 1);
  CHECK(bar2.sparse[0].size == 0x40000000);
  CHECK(regions[VFIO_PCI_BAR3_REGION_INDEX].size == 0);
  CHECK(regions[VFIO_PCI_BAR5_REGION_INDEX].size == 0);
  CHECK(regions[VFIO_PCI_BAR0_REGION_INDEX].size == 16 * MiB);
  CHECK(regions[VFIO_PCI_BAR0_REGION_INDEX].sparse.empty());
  CHECK(regions[VFIO_PCI_CONFIG_REGION_INDEX].size == 4096);
  CHECK(regions[VFIO_PCI_ROM_REGION_INDEX].size == 0);
}

TEST_CASE("R10: GB200 BAR2 is the device's own region, not sparse") {
  auto layout = pciemu::compute_layout({0x400000000000, 186 * GiB, false});
  auto bars = pciemu::visible_bars(*pciemu::find_identity(0x2941), *layout);
  auto regions = vfio::region_table(bars, 4096);
  CHECK(regions[VFIO_PCI_BAR2_REGION_INDEX].size == 256 * GiB);
  CHECK(regions[VFIO_PCI_BAR2_REGION_INDEX].sparse.empty());
  CHECK(regions[VFIO_PCI_BAR4_REGION_INDEX].sparse.at(0).size == 186 * GiB);
}
