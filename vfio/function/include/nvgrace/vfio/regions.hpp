// A region as VFIO_DEVICE_GET_REGION_INFO describes it, and the region table
// of a function whose BARs are known (an emulated one, or the variant's fake
// BARs: nvgrace-model.md R16).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "nvgrace/common/types.hpp"
#include "nvgrace/pciemu/bars.hpp"

namespace nvgrace::vfio {

struct SparseArea {
  std::uint64_t offset = 0;
  std::uint64_t size = 0;
};

struct RegionDesc {
  RegionIndex index;            // VFIO_PCI_*_REGION_INDEX
  std::uint64_t size = 0;
  std::uint32_t flags = 0;      // VFIO_REGION_INFO_FLAG_*
  std::vector<SparseArea> sparse;  // VFIO_REGION_INFO_CAP_SPARSE_MMAP areas, when any
  bool write_combined = false;  // R19: resmem must be mapped write-combined (NORMAL_NC)
};

// Where region `index` starts in the device fd, as vfio-pci lays regions out
// (the kernel's VFIO_PCI_INDEX_TO_OFFSET, which is not part of the UAPI).
inline constexpr unsigned kRegionOffsetShift = 40;
[[nodiscard]] constexpr std::uint64_t region_offset(RegionIndex index) {
  return static_cast<std::uint64_t>(index.value()) << kRegionOffsetShift;
}

// One entry per VFIO PCI region index, BAR0..VGA (VFIO_PCI_NUM_REGIONS).
// BARs with memory behind them (the fake BARs): size = BAR size,
// READ|WRITE|MMAP, one sparse area {0, length} (R16). The upper halves of
// 64-bit BARs and absent BARs have size 0. The device's own BARs are
// trapped by the emulation: READ|WRITE.
// `config_size` is the config region's size (4096 for PCIe).
[[nodiscard]] std::vector<RegionDesc> region_table(std::span<const pciemu::GuestBar> bars, std::uint64_t config_size);

}  // namespace nvgrace::vfio
