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
#include <optional>
#include <string>
#include <string_view>
#include <vector>

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

// Where usemem is in the instance (host_base - extent.start), for a layout
// the instance can back: usemem only (no resmem: EPERM, whatever the
// instance), inside the extent (else ERANGE) and on its granule (EINVAL).
[[nodiscard]] Result<std::uint64_t> dax_usemem_offset(const pciemu::Layout& layout, const DaxExtent& extent,
                                                      std::string_view name);

// The instances sysfs lists (SYSFS/bus/dax/devices/daxX.Y), by name; none
// where the bus is absent (no dax driver loaded).
struct DaxInstance {
  std::string name;  // "dax0.0": /dev/dax0.0
  DaxExtent extent;
};
[[nodiscard]] Result<std::vector<DaxInstance>> dax_instances(const std::filesystem::path& sysfs);

// What --host-memory would give a layout here (inspect --host): the first
// instance that holds its usemem, and whether it may back the fake BARs on
// the kernel `kernel_release` (dax_memory_type()); none when no instance
// holds it.
struct DaxRoute {
  std::string name;
  bool usable = false;
  std::string why;  // when not usable: why, and what to do instead
};
[[nodiscard]] std::optional<DaxRoute> find_dax_route(const pciemu::Layout& layout,
                                                     const std::vector<DaxInstance>& instances,
                                                     std::string_view kernel_release);

// usemem at its host address through the instance (dax_usemem_offset()).
[[nodiscard]] Result<std::unique_ptr<MemoryBackend>> make_dax_backend(const pciemu::Layout& layout, sys::UniqueFd fd,
                                                                     const DaxExtent& extent, std::string name);

// Opens `path` and reads its extent from `sysfs`.
[[nodiscard]] Result<std::unique_ptr<MemoryBackend>> open_dax_backend(const pciemu::Layout& layout,
                                                                     const std::filesystem::path& path,
                                                                     const std::filesystem::path& sysfs);

}  // namespace nvgrace::vfio::host
