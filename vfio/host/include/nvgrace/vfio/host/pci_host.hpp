// What the host says about one PCI function nvgrace is asked to serve: its
// driver, IOMMU group and the other members of that group, the VFIO nodes
// that exist for it, and /dev/mem. Read from sysfs and /dev (paths are
// parameters, so tests use fake trees). Nothing is opened for I/O except in
// serve_readiness(), which tries the device nodes the way serving would.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "nvgrace/common/result.hpp"
#include "nvgrace/common/types.hpp"

namespace nvgrace::vfio::host {

// The kernel's nvgrace-gpu variant driver as it shows in sysfs (KBUILD_MODNAME
// of nvgrace-gpu-vfio-pci.ko).
inline constexpr std::string_view kNvgraceGpuDriver = "nvgrace_gpu_vfio_pci";
inline constexpr std::string_view kVfioPciDriver = "vfio-pci";

struct PciHostState {
  Bdf bdf;
  std::optional<std::uint16_t> vendor, device;
  std::string driver;                                             // empty: no driver bound
  std::optional<unsigned> iommu_group;                            // <bdf>/iommu_group
  std::vector<std::pair<std::string, std::string>> group_members;  // (bdf, driver) of every function in the group
  std::optional<std::string> vfio_cdev;                           // "vfio0" from <bdf>/vfio-dev/
  bool dev_iommu = false;                                         // /dev/iommu exists
  bool dev_vfio_container = false;                                // /dev/vfio/vfio exists

  // The group is viable when each of its functions is bound to a VFIO driver or to none.
  [[nodiscard]] bool group_viable() const;
  [[nodiscard]] std::string group_members_text() const;
  // One line: the driver it has, and the sysfs commands that bind it to vfio-pci.
  [[nodiscard]] std::string bind_advice() const;
};

[[nodiscard]] Result<PciHostState> probe_pci_host(const std::filesystem::path& sysfs, const std::filesystem::path& dev,
                                                  const Bdf& bdf);

// Whether `serve --host` can open the function, and what is missing (R26):
// the driver, a viable group, a VFIO API whose nodes open, and the node
// under `dev` the fake BARs' memory comes from (`memory`): "mem" (/dev/mem,
// whose memory type must be Normal here, R40) or a device-DAX instance's
// name (--host-memory); none where the kernel's nvgrace-gpu or plain
// passthrough needs no host memory.
struct ServeReadiness {
  bool ready = false;
  std::string api;                   // "cdev" or "group" when ready
  std::vector<std::string> missing;  // one line each
};
[[nodiscard]] ServeReadiness serve_readiness(const PciHostState& st, const std::filesystem::path& dev,
                                             const std::optional<std::string>& memory);

}  // namespace nvgrace::vfio::host
