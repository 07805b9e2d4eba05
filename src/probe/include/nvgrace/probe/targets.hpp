// The two ways the probe reaches a device: the kernel's VFIO ioctls on a
// function bound to vfio-pci or to the kernel's nvgrace-gpu (whatever the
// kernel's driver answers is the transcript), or a vfio-user server's socket.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "nvgrace/common/result.hpp"
#include "nvgrace/common/types.hpp"
#include "nvgrace/probe/probe.hpp"
#include "nvgrace/vfio/host/vfio_io.hpp"

namespace nvgrace::probe {

struct VfioTargetOptions {
  Bdf bdf;
  vfio::host::VfioApi api = vfio::host::VfioApi::automatic;
  bool allow_noiommu = false;  // a no-IOMMU group (no DMA is done: config and regions only)
  std::filesystem::path sysfs = "/sys";
  std::filesystem::path dev = "/dev";
};
[[nodiscard]] Result<std::unique_ptr<Target>> open_vfio_target(const VfioTargetOptions& o);

[[nodiscard]] Result<std::unique_ptr<Target>> open_socket_target(const std::string& socket_path);

}  // namespace nvgrace::probe
