// Walking the capability lists of a config-space image (PCI Local Bus 3.0,
// section 6.7; PCIe 6.0, section 7.6): the standard list from 0x34 and the
// extended list from 0x100. Never reads outside the image, always terminates:
// a loop, a pointer into the header or below 0x100, or one past the image
// ends the walk and is named in `defect`.
//
// Used for the NVIDIA DVSEC (R2), the MSI-X table and PBA location (R27) and
// the CXL Device DVSEC (R31).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

namespace nvgrace::pciemu {

struct CapabilityHit {
  std::optional<unsigned> offset;  // where the capability starts, when found
  std::string defect;              // why the walk ended early; empty when the list just ended
};

// The standard capability with `id` (PCI_CAP_ID_*).
[[nodiscard]] CapabilityHit find_capability(std::span<const std::uint8_t> config, std::uint8_t id);

// The Designated Vendor-Specific extended capability of `vendor` and `dvsec_id`.
[[nodiscard]] CapabilityHit find_dvsec(std::span<const std::uint8_t> config, std::uint16_t vendor,
                                       std::uint16_t dvsec_id);

// Where a function's MSI-X table and PBA live (from its MSI-X capability).
struct MsixLocation {
  unsigned capability = 0;
  unsigned vectors = 0;
  unsigned table_bar = 0;  // BIR
  std::uint32_t table_offset = 0;
  unsigned pba_bar = 0;
  std::uint32_t pba_offset = 0;
};
[[nodiscard]] std::optional<MsixLocation> find_msix(std::span<const std::uint8_t> config);

// R31: readiness through the CXL Device DVSEC (vendor 0x1E98, ID 0): the word
// at DVSEC + 0x1C (Range 1 Size Low).
inline constexpr std::uint16_t kCxlVendorId = 0x1E98;
inline constexpr std::uint16_t kCxlDeviceDvsecId = 0;
inline constexpr unsigned kCxlRange1SizeLow = 0x1C;
inline constexpr std::uint32_t kCxlMemInfoValid = 1u << 0;
inline constexpr std::uint32_t kCxlMemActive = 1u << 1;
// MEM_INFO_VALID must be set within this long (R31).
inline constexpr std::chrono::seconds kCxlMemInfoValidTimeout{1};

struct CxlMemoryStatus {
  bool info_valid = false;
  bool active = false;
  std::chrono::seconds active_timeout{1};  // Memory_Active_Timeout, bits 15:13
};
// Decodes the Range 1 Size Low word: bits 0 and 1, and the timeout in bits
// 15:13 (0: 1 s, 1: 4 s, 2: 16 s, 3: 64 s, 4 and above: 256 s).
[[nodiscard]] CxlMemoryStatus decode_cxl_range_size_low(std::uint32_t word);

}  // namespace nvgrace::pciemu
