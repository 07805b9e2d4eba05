// PCI functions as Linux sysfs shows them, and their firmware nodes (R6):
// the ACPI node (firmware_node) or, on a guest booted with a device tree,
// the DT node (of_node) with its properties. Reads files under a
// configurable root so tests can use a fake tree.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "nvgrace/acpi/gpu.hpp"
#include "nvgrace/common/result.hpp"
#include "nvgrace/common/types.hpp"

namespace nvgrace::acpi {

struct PciFunction {
  Bdf bdf;
  std::optional<std::uint16_t> vendor;   // <bdf>/vendor
  std::optional<std::uint16_t> device;   // <bdf>/device
  std::optional<std::string> acpi_path;  // <bdf>/firmware_node/path
  // <bdf>/of_node: the device-tree node's path (e.g. /pcie@10000000/gpu@3),
  // and the GPU memory properties it carries (R38: the _DSD names, each a
  // 64-bit big-endian value, as device_property_read_u64 reads them).
  std::optional<std::string> of_node;
  GpuMemoryProperties of_properties;
  bool of_has_gpu_properties = false;  // any nvidia,gpu-mem-* property at all
  std::vector<std::string> of_problems;  // a property Linux could not read as a u64, a required one missing
  std::vector<std::uint8_t> config;      // <bdf>/config (256 bytes unprivileged, 4 KiB as root)
  std::string config_error;              // why config is empty, when it is
};

// A sysfs id file ("0x10de\n", as <bdf>/vendor and <bdf>/device hold them):
// the 16-bit id, or nullopt when the file is missing or holds anything else.
[[nodiscard]] std::optional<std::uint16_t> read_sysfs_id(const std::filesystem::path& p);

// Reads <root>/bus/pci/devices/<bdf>/...
[[nodiscard]] Result<PciFunction> read_pci_function(const std::filesystem::path& sysfs_root, const Bdf& bdf);

// Every function under <root>/bus/pci/devices with the given vendor id.
[[nodiscard]] Result<std::vector<PciFunction>> list_pci_functions(const std::filesystem::path& sysfs_root,
                                                                  std::uint16_t vendor);

}  // namespace nvgrace::acpi
