// A real GPU bound to the kernel nvgrace-gpu variant driver, used as a memory
// backend: its BAR2/BAR4 regions are mmap'd through the VFIO device fd, and
// the region info the kernel reports is compared with nvgrace's model.
//
// Opened through the legacy group/container API (/dev/vfio/vfio +
// /dev/vfio/<group> + a BDF) or the iommufd device cdev
// (/dev/vfio/devices/vfioN + /dev/iommu). Needs such a host; the pure parts
// (decode_region_info, compare_regions) are unit-tested on byte buffers.
//
// Thread-safety: immutable after open.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "nvgrace/common/result.hpp"
#include "nvgrace/vfio/backend.hpp"
#include "nvgrace/vfio/fd.hpp"
#include "nvgrace/vfio/region_info.hpp"

namespace nvgrace::vfio {

class HostVfioDevice {
 public:
  [[nodiscard]] static Result<HostVfioDevice> open_group(const std::filesystem::path& group, const std::string& bdf);
  [[nodiscard]] static Result<HostVfioDevice> open_cdev(const std::filesystem::path& cdev);

  // VFIO_DEVICE_GET_REGION_INFO with the capability chain (argsz retried).
  [[nodiscard]] Result<DecodedRegionInfo> region_info(unsigned index) const;
  [[nodiscard]] int fd() const { return device_.get(); }

 private:
  UniqueFd container_;  // group path: /dev/vfio/vfio; cdev path: /dev/iommu
  UniqueFd group_;
  UniqueFd device_;
};

// Every difference between the model's region table and what the host
// reports, one line each ("region 4: size 0x2000000000 in the model,
// 0x1000000000 on the host"). Empty when they agree (R16).
[[nodiscard]] std::vector<std::string> compare_regions(const std::vector<RegionDesc>& model,
                                                       const std::vector<DecodedRegionInfo>& host);

// Maps the host's BAR2/BAR4 sparse areas. Fails, listing the mismatches, when
// the host's regions do not match `layout`.
[[nodiscard]] Result<std::unique_ptr<MemoryBackend>> make_host_vfio_backend(HostVfioDevice device,
                                                                           const pciemu::Layout& layout);

}  // namespace nvgrace::vfio
