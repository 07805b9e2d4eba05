// The firmware description nvgrace emits for an emulated Grace host
// (nvgrace-model.md R3, R38): the GPU memory properties as Grace firmware
// writes them, for a VMM's guest to read as the real host's kernel does.
//   ACPI: an SSDT that adds _DSD to the VMM's device for the function (q35
//         names slot devices \_SB.PCI0.S<devfn in hex>); iasl compiles it.
//   DT:   for guests booted with a device tree (arm64 `virt`, where QEMU
//         refuses -acpitable): a node for the function under the PCIe host
//         bridge carrying the same properties as 64-bit values, and a
//         /reserved-memory no-map range that keeps the memory from the guest
//         kernel (Linux's device_property_read_u64 reads either form).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "nvgrace/acpi/gpu.hpp"
#include "nvgrace/common/result.hpp"

namespace nvgrace::acpi {

// q35's name for the device at (slot, function) of bus 0: \_SB.PCI0.S<devfn>.
[[nodiscard]] Path q35_slot_device(unsigned slot, unsigned function);
// q35's name for device 0 behind the root port at (slot, function) of bus 0:
// QEMU describes the port's slot as S00 under the port (\_SB.PCI0.S18.S00).
[[nodiscard]] Path q35_root_port_device(unsigned slot, unsigned function);

struct SsdtRequest {
  Path device;                  // the function's ACPI device (Scope of the _DSD)
  GpuMemoryProperties props;   // written in kGpuMemoryFields order (R38); absent ones left out
  std::string oem_table_id = "NVGRACE";  // up to 8 characters
  std::vector<std::string> comment;      // lines for the header comment
};
// ASL source of one SSDT (DefinitionBlock) with the _DSD on `device`.
[[nodiscard]] Result<std::string> emit_ssdt_asl(const SsdtRequest& r);

struct DtsRequest {
  std::string host_bridge;      // the PCIe host bridge's node path, e.g. /pcie@10000000
  unsigned bus = 0, slot = 0, function = 0;
  // As for the SSDT: the function is device 0 behind a root port at (slot,
  // function); the port's node and the function's node under it.
  bool behind_root_port = false;
  GpuMemoryProperties props;    // mem_base_pa and mem_size are required: they are also the no-map range
  std::vector<std::string> comment;
};
// A DTS fragment to append to the VMM's decompiled device tree (it uses
// path references, no /dts-v1/ header): the /reserved-memory range and the
// function's node with the properties as /bits/ 64 values.
[[nodiscard]] Result<std::string> emit_dts_fragment(const DtsRequest& r);

// Compiles ASL with `iasl` (found on PATH) in a private temporary folder;
// the AML table's bytes, or iasl's own messages when it refuses.
[[nodiscard]] Result<std::vector<std::uint8_t>> compile_asl(const std::string& asl);

}  // namespace nvgrace::acpi
