// The host's GPU memory through a device-DAX instance (/dev/daxX.Y): the one
// user-space route found to give a VMM a Normal write-back mapping of a
// physical range outside the kernel's linear map without the kernel's
// nvgrace-gpu (R40; docs/host.md lists the routes tried). The instance's
// pages are ordinary struct pages (ZONE_DEVICE), so the mapping keeps the
// VMA's cacheable default, and KVM 7.x maps it cacheable at stage 2 (6.12's
// KVM still chose Device there for memory outside the linear map).
//
// Device-DAX maps write-back only: it cannot give resmem the Normal
// non-cacheable type R19/R40 ask for, so a layout with resmem (GH200 with
// the MIG bug) is refused; Grace Blackwell has usemem only.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "nvgrace/common/result.hpp"
#include "nvgrace/pciemu/layout.hpp"
#include "nvgrace/sys/fd.hpp"
#include "nvgrace/vfio/variant/memory.hpp"

namespace nvgrace::vfio::host {

// Where a device-DAX instance's offset 0 is, as its sysfs node says.
struct DaxExtent {
  std::uint64_t start = 0;  // host physical address of offset 0 (`resource`)
  std::uint64_t size = 0;   // bytes (`size`)
  std::uint64_t align = 0;  // the mapping granule (`align`)
};

// The extent of the instance `fd` is open on: /sys/dev/char/MAJ:MIN/.
[[nodiscard]] Result<DaxExtent> dax_extent(int fd, const std::filesystem::path& sysfs);

// usemem at its host address through the instance: offset host_base -
// extent.start, which must be inside the instance and on its granule.
[[nodiscard]] Result<std::unique_ptr<MemoryBackend>> make_dax_backend(const pciemu::Layout& layout, sys::UniqueFd fd,
                                                                     const DaxExtent& extent, std::string name);

// Opens `path` and reads its extent from `sysfs`.
[[nodiscard]] Result<std::unique_ptr<MemoryBackend>> open_dax_backend(const pciemu::Layout& layout,
                                                                     const std::filesystem::path& path,
                                                                     const std::filesystem::path& sysfs);

}  // namespace nvgrace::vfio::host
