// VFIO_DEVICE_GET_REGION_INFO replies as bytes: struct vfio_region_info
// followed by its capability chain (struct vfio_info_cap_header,
// vfio_region_info_cap_sparse_mmap), exactly as <linux/vfio.h> lays them out,
// so they can be handed to a VMM or sent over a socket unchanged (R16).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "nvgrace/common/result.hpp"
#include "nvgrace/vfio/regions.hpp"

namespace nvgrace::vfio {

// The reply to a caller that offered `argsz` bytes. As the kernel does: when
// the capabilities do not fit, the reply is the bare struct with
// VFIO_REGION_INFO_FLAG_CAPS set, cap_offset 0 and argsz raised to the size
// needed, so the caller can retry.
// `offset` is the region's offset in the device fd (what the caller must
// mmap); by default vfio-pci's index << 40. A vfio-user server passes the
// offset in the fd it sends.
[[nodiscard]] std::vector<std::uint8_t> encode_region_info(const RegionDesc& region, std::uint32_t argsz,
                                                           std::optional<std::uint64_t> offset = std::nullopt);

// The size of the full reply (struct and capabilities).
[[nodiscard]] std::uint32_t region_info_size(const RegionDesc& region);

struct DecodedRegionInfo {
  RegionDesc region;
  std::uint64_t offset = 0;        // the region's offset in the device fd
  std::uint32_t argsz = 0;         // as the reply says (may exceed the bytes given)
  std::vector<std::uint16_t> cap_ids;  // every capability seen, in chain order
};

// Reads a reply, as returned by the kernel or a vfio-user server. The chain
// walk never reads outside `bytes` and stops on a loop; capabilities nvgrace
// does not know are listed and skipped. Errors name the offset at fault.
[[nodiscard]] Result<DecodedRegionInfo> decode_region_info(std::span<const std::uint8_t> bytes);

}  // namespace nvgrace::vfio
