// Detection of the Grace Hopper "MIG hardware bug" from a config-space image
// (nvgrace-model.md R2).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

namespace nvgrace::pciemu {

// NVIDIA's DVSEC carrying GPU capability bits (R2).
inline constexpr std::uint16_t kNvidiaGpuCapDvsecId = 3;
// Offset of the capability word inside that DVSEC, and its bit 0.
inline constexpr unsigned kDvsecMigCapOffset = 0xA;
inline constexpr std::uint16_t kMigSupportedWithCachedResmem = 0x1;

struct MigDetection {
  bool mig_hw_bug = true;                 // R2: assumed unless the DVSEC says otherwise
  std::optional<unsigned> dvsec_offset;   // config offset of the NVIDIA DVSEC, when found
  std::string reason;                     // one line a person can read: why this answer
};

// Walks the PCIe extended capability list of `config` (a config-space image of
// up to 4 KiB, as read from sysfs or a dump). Never reads outside the image and
// always terminates: a malformed chain (a loop, a pointer below 0x100, one
// leading past the image) ends the walk and counts as "DVSEC absent", with the
// defect named in `reason`.
[[nodiscard]] MigDetection detect_mig_hw_bug(std::span<const std::uint8_t> config);

}  // namespace nvgrace::pciemu
