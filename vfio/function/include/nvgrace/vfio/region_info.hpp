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

// How a reply too short for the capabilities tells the caller to retry with
// the larger argsz it carries. The kernel also sets VFIO_REGION_INFO_FLAG_CAPS
// (with cap_offset 0); QEMU's vfio-user client rejects CAPS with cap_offset 0
// before it looks at argsz, so vfio-user replies leave CAPS clear.
enum class ShortReply { caps_flag_set, caps_flag_clear };

// The reply to a caller that offered `argsz` bytes: the struct and its
// capabilities when they fit, else the bare struct with argsz raised to the
// size needed and cap_offset 0 (CAPS per `short_reply`).
// `offset` is the region's offset in the device fd (what the caller must
// mmap); by default vfio-pci's index << 40. A vfio-user server passes the
// offset in the fd it sends.
[[nodiscard]] std::vector<std::uint8_t> encode_region_info(const RegionDesc& region, std::uint32_t argsz,
                                                           std::optional<std::uint64_t> offset = std::nullopt,
                                                           ShortReply short_reply = ShortReply::caps_flag_set);

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
