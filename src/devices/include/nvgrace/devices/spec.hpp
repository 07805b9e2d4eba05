// One GPU as nvgrace is asked about it, however it was described: a built-in
// profile, flags, or real ACPI tables and sysfs (R3-R6). What the report
// (report.hpp) and the assembly of a served device (emulated.hpp, host.hpp)
// start from.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "nvgrace/common/result.hpp"
#include "nvgrace/common/types.hpp"

namespace nvgrace::devices {

struct DeviceSpec {
  std::string name;                    // "gpu0", ...
  std::optional<std::string> profile;  // built-in profile it came from
  std::uint16_t device_id = 0;
  std::uint64_t mem_base = 0;
  std::uint64_t mem_size = 0;
  bool mig_hw_bug = false;
  std::string mig_hw_bug_source;       // "flag", "device-id", "config"
  unsigned phys_addr_bits = 64;

  // From ACPI (or a device tree) and sysfs (R3-R6, R38), when the GPU was found there.
  std::optional<std::string> acpi_path;
  std::optional<std::string> dt_node;  // the device-tree node, where the description came from a device tree (R38)
  std::optional<Bdf> bdf;
  std::optional<std::uint64_t> segment;
  std::vector<std::uint64_t> adr_chain;
  std::optional<std::uint64_t> pxm_start, pxm_count;
  std::optional<std::uint64_t> egm_base_pa, egm_size, egm_pxm, egm_retired_pages_data_base;
  // Set when the firmware description rules out fake BARs (R5): the reason.
  std::optional<std::string> passthrough_reason;
  // On a live host (or a fake sysfs/dev tree): whether `serve --host` can
  // open this GPU, and what is missing (R26).
  struct ServeCheck {
    std::string driver;  // empty: none bound
    std::optional<unsigned> iommu_group;
    bool ready = false;
    std::string vfio_api;  // "cdev" or "group" when ready
    std::vector<std::string> missing;
    // Where the fake BARs' memory would come from and the memory type each
    // region gets there (R40); empty for a GPU served as passthrough.
    std::string memory_path;
    std::string usemem_type;
    std::string resmem_type;
    // A device-DAX instance that holds usemem (serve --host --host-memory,
    // R40), and whether it may back the fake BARs on this kernel; `why`
    // says why not. `needed`: /dev/mem cannot, so serving needs this one.
    struct HostMemory {
      std::string path;
      bool usable = false;
      bool needed = false;
      std::string why;
    };
    std::optional<HostMemory> host_memory;
  };
  std::optional<ServeCheck> serve;
  // Set when the tables describe a GPU that this host does not show as a PCI
  // function (absent, disabled, hidden by firmware): the reason. device_id
  // is then 0 unless --device-id gave one.
  std::optional<std::string> absent_reason;
};

// A GPU described by its numbers (--device-id, --mem-base, --mem-size): the
// MIG bug is `forced_mig_bug` where given, else what the device id implies
// (R2). Fails for a device id that is no Grace GPU (R1).
[[nodiscard]] Result<DeviceSpec> spec_from_numbers(std::string name, std::uint16_t device_id, std::uint64_t mem_base,
                                                   std::uint64_t mem_size, std::optional<bool> forced_mig_bug,
                                                   unsigned phys_addr_bits);
// The index-th GPU of a built-in profile, as an emulated host has it: its
// memory at emulated_mem_base(index) (docs/profiles.md).
[[nodiscard]] Result<DeviceSpec> spec_from_profile(std::string name, std::string_view profile, unsigned index,
                                                   std::optional<bool> forced_mig_bug, unsigned phys_addr_bits);

}  // namespace nvgrace::devices
