#include "nvgrace/vfio/regions.hpp"

#include <linux/vfio.h>

namespace nvgrace::vfio {

std::vector<RegionDesc> region_table(std::span<const pciemu::GuestBar> bars, std::uint64_t config_size) {
  std::vector<RegionDesc> regions(VFIO_PCI_NUM_REGIONS);
  for (unsigned i = 0; i < regions.size(); ++i) regions[i].index = RegionIndex{i};
  for (const auto& b : bars) {
    if (b.index.value() > VFIO_PCI_BAR5_REGION_INDEX) continue;
    auto& r = regions[b.index.value()];
    r.size = b.size;
    r.flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
    if (b.mem) {  // R16
      r.flags |= VFIO_REGION_INFO_FLAG_MMAP;
      r.sparse.push_back({0, b.mem->length});
      r.write_combined = !b.mem->cacheable;
    }
  }
  auto& cfg = regions[VFIO_PCI_CONFIG_REGION_INDEX];
  cfg.size = config_size;
  cfg.flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
  return regions;
}

}  // namespace nvgrace::vfio
