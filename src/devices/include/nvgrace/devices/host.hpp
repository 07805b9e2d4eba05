// Real devices bound to vfio-pci, assembled for serving (R3-R6, R26-R31):
// each --host function is found in the host's ACPI tables and sysfs, opened
// through VFIO (vfio/host), and given the variant (vfio/variant) over its
// GPU memory - or, where the kernel's nvgrace-gpu already holds it, served
// with the kernel's own regions once they match the model (R16). Which
// memory path a GPU gets is decided here, not by a command.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "nvgrace/common/result.hpp"
#include "nvgrace/vfio/function.hpp"
#include "nvgrace/vfio/host/vfio_io.hpp"

namespace nvgrace::devices {

struct HostQuery {
  std::vector<std::string> bdfs;  // as given (--host)
  vfio::host::VfioApi api = vfio::host::VfioApi::automatic;
  std::optional<std::uint16_t> assume_device_id;  // a stand-in device (tests): readiness skipped
  // A stand-in has no NVIDIA DVSEC to say whether the GPU has the MIG bug
  // (R2: none means it has): --mig-bug/--no-mig-bug says (tests).
  std::optional<bool> forced_mig_bug;
  bool mmap_fake_bars = true;
  std::filesystem::path acpi = "/sys/firmware/acpi/tables";
  std::filesystem::path sysfs = "/sys";
  std::filesystem::path dev = "/dev";
  // Serve a device in a no-IOMMU group (--vfio-noiommu): not isolated, and
  // no DMA mapping can be made for it (config and region semantics only).
  bool allow_noiommu = false;
  // Back the fake BARs with /dev/mem even where it gives Device memory
  // (--allow-device-memory; R40): tests only.
  bool allow_device_memory = false;
  // The fake BARs' memory from device-DAX instances (--host-memory) instead
  // of /dev/mem: each GPU takes the one whose extent holds its usemem (R40).
  std::vector<std::filesystem::path> dax;
  // The kernel whose KVM decides device-DAX memory's stage-2 type (R40), as
  // uname's release; empty: the running kernel (tests name one).
  std::string kernel_release;
  // R41: a successor server process takes each device over from the
  // descriptors its predecessor handed over instead of opening it (which a
  // held group or a bound cdev refuses). nullopt: not handed over, open it.
  std::function<std::optional<Result<vfio::host::OpenedVfio>>(Bdf)> adopt;
};

// Why a device cannot be served, in one line that names what is wrong.
struct HostRefusal {
  bool usage = true;  // the command line asks for what cannot be had here; false: the device is unusable
  std::string line;
};

struct HostDevice {
  Bdf bdf;
  std::unique_ptr<vfio::Function> device;  // the variant, or the function as it is
  std::string ids;                         // "1b36:0010 as 0x2342": what it is (and stands in for)
  std::string how;                         // "through VFIO cdev (iommufd); <memory>; readiness <rule>"
  std::vector<std::string> warnings;       // for the log (passthrough, a stand-in)
};

[[nodiscard]] expected<std::vector<HostDevice>, HostRefusal> build_host_devices(const HostQuery& q);

}  // namespace nvgrace::devices
