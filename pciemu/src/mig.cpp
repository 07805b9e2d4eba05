#include "nvgrace/pciemu/mig.hpp"

#include <fmt/format.h>
#include <linux/pci_regs.h>

#include "nvgrace/pciemu/capabilities.hpp"
#include "nvgrace/pciemu/identity.hpp"

namespace nvgrace::pciemu {

MigDetection detect_mig_hw_bug(std::span<const std::uint8_t> config) {
  auto absent = [](const std::string& why) {
    return MigDetection{true, std::nullopt,
                        fmt::format("{}: NVIDIA DVSEC {} treated as absent, MIG bug assumed (R2)", why,
                                    kNvidiaGpuCapDvsecId)};
  };
  const auto hit = find_dvsec(config, kNvidiaVendorId, kNvidiaGpuCapDvsecId);
  if (!hit.offset) return absent(hit.defect.empty() ? "not in the extended capability list" : hit.defect);
  const std::size_t at = *hit.offset + kDvsecMigCapOffset;
  if (at + 2 > config.size())
    return absent(fmt::format("DVSEC at {:#x} runs past the {}-byte image", *hit.offset, config.size()));
  const auto word = static_cast<std::uint16_t>(config[at] | config[at + 1] << 8);
  const bool supported = (word & kMigSupportedWithCachedResmem) != 0;
  return MigDetection{!supported, *hit.offset,
                      fmt::format("NVIDIA DVSEC {} at {:#x}, word at +{:#x} = {:#06x}: {} (R2)", kNvidiaGpuCapDvsecId,
                                  *hit.offset, kDvsecMigCapOffset, word,
                                  supported ? "MIG with cached resmem supported, no bug"
                                            : "bit 0 clear, MIG bug present")};
}

}  // namespace nvgrace::pciemu
