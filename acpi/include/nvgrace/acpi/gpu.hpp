// Grace GPU memory properties from _DSD (nvgrace-model.md R3-R6).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nvgrace/acpi/aml.hpp"

namespace nvgrace::acpi {

// daffd814-6eba-4d8c-8a91-bc9bbf4aa301 as ToUUID() lays it out in a buffer.
inline constexpr std::array<std::uint8_t, 16> kDevicePropertiesUuid{
    0x14, 0xd8, 0xff, 0xda, 0xba, 0x6e, 0x8c, 0x4d, 0x8a, 0x91, 0xbc, 0x9b, 0xbf, 0x4a, 0xa3, 0x01};

struct Property {
  std::string name;
  Value value;
};

struct DeviceProperties {
  std::vector<Property> properties;   // from every device-properties package, in order
  std::vector<std::string> problems;  // malformed parts, each one line
  unsigned other_uuids = 0;           // packages of other UUIDs skipped (e.g. hierarchical data)
};

// Reads a _DSD package: {UUID, Package, UUID, Package, ...} (Device Properties
// UUID spec). Properties of other UUIDs are skipped, not misread.
[[nodiscard]] DeviceProperties parse_dsd(const Value& dsd);

// R3, typed. Every field is optional: firmware may leave any of them out.
struct GpuMemoryProperties {
  std::optional<std::uint64_t> mem_base_pa;
  std::optional<std::uint64_t> mem_size;
  std::optional<std::uint64_t> mem_pxm_start;
  std::optional<std::uint64_t> mem_pxm_count;
  std::optional<std::uint64_t> egm_base_pa;
  std::optional<std::uint64_t> egm_size;
  std::optional<std::uint64_t> egm_pxm;
  std::optional<std::uint64_t> egm_retired_pages_data_base;
};

// Every property of GpuMemoryProperties with its name, in the order
// edk2-nvidia writes them (R38): the reader matches names, the emitters
// write in this order.
struct GpuMemoryField {
  std::string_view name;
  std::optional<std::uint64_t> GpuMemoryProperties::*member;
};
inline constexpr std::array<GpuMemoryField, 8> kGpuMemoryFields{{
    {"nvidia,gpu-mem-base-pa", &GpuMemoryProperties::mem_base_pa},
    {"nvidia,gpu-mem-pxm-start", &GpuMemoryProperties::mem_pxm_start},
    {"nvidia,gpu-mem-pxm-count", &GpuMemoryProperties::mem_pxm_count},
    {"nvidia,gpu-mem-size", &GpuMemoryProperties::mem_size},
    {"nvidia,egm-base-pa", &GpuMemoryProperties::egm_base_pa},
    {"nvidia,egm-size", &GpuMemoryProperties::egm_size},
    {"nvidia,egm-pxm", &GpuMemoryProperties::egm_pxm},
    {"nvidia,egm-retired-pages-data-base", &GpuMemoryProperties::egm_retired_pages_data_base},
}};
// R5: the two a device cannot get fake BARs without.
inline constexpr std::array<std::string_view, 2> kRequiredGpuMemoryProperties{"nvidia,gpu-mem-base-pa",
                                                                              "nvidia,gpu-mem-size"};

// A device node that describes Grace GPU memory.
struct GpuNode {
  Path path;
  std::string table;                // where the Device is defined
  std::optional<Path> host_bridge;  // nearest PNP0A08/PNP0A03 ancestor
  std::uint64_t segment = 0;        // _SEG of the host bridge (0 when it has none)
  std::uint64_t bus = 0;            // _BBN of the host bridge (0 when it has none)
  std::vector<std::uint64_t> adr_chain;  // _ADR of each device below the host bridge, down to this one
  GpuMemoryProperties mem;
  // Why the device cannot get fake BARs from these properties (R5): a missing
  // or mistyped property, an unreadable _DSD. Empty when usable.
  std::vector<std::string> problems;
};

// Every Device whose _DSD carries an nvidia,gpu-mem-* property (R3).
[[nodiscard]] std::vector<GpuNode> find_gpus(const Namespace& ns);

// The same description for one node, whatever its _DSD holds (for a PCI
// device found through sysfs whose node may have no properties).
[[nodiscard]] GpuNode describe_node(const Namespace& ns, const Path& path);

}  // namespace nvgrace::acpi
