#include "nvgrace/pciemu/mig.hpp"

#include <bitset>

#include <fmt/format.h>
#include <linux/pci_regs.h>

#include "nvgrace/pciemu/identity.hpp"

namespace nvgrace::pciemu {
namespace {

std::optional<std::uint32_t> read32(std::span<const std::uint8_t> img, std::size_t off) {
  if (off > img.size() || img.size() - off < 4) return std::nullopt;
  return static_cast<std::uint32_t>(img[off]) | static_cast<std::uint32_t>(img[off + 1]) << 8 |
         static_cast<std::uint32_t>(img[off + 2]) << 16 | static_cast<std::uint32_t>(img[off + 3]) << 24;
}

MigDetection absent(std::string why) {
  return MigDetection{true, std::nullopt,
                      fmt::format("{}: NVIDIA DVSEC {} treated as absent, MIG bug assumed (R2)", why,
                                  kNvidiaGpuCapDvsecId)};
}

}  // namespace

MigDetection detect_mig_hw_bug(std::span<const std::uint8_t> config) {
  if (config.size() <= PCI_CFG_SPACE_SIZE)
    return absent(fmt::format("config image is {} bytes, no extended space", config.size()));

  // One bit per dword of extended space: a revisited header is a loop.
  std::bitset<(PCI_CFG_SPACE_EXP_SIZE - PCI_CFG_SPACE_SIZE) / 4> seen;
  std::size_t pos = PCI_CFG_SPACE_SIZE;
  for (;;) {
    auto header = read32(config, pos);
    if (!header)
      return absent(fmt::format("extended capability at {:#x} lies past the {}-byte image", pos, config.size()));
    // All-zero or all-ones at 0x100 means "no extended capabilities".
    if (pos == PCI_CFG_SPACE_SIZE && (*header == 0 || *header == 0xFFFFFFFFu))
      return absent("no extended capabilities");
    seen.set((pos - PCI_CFG_SPACE_SIZE) / 4);

    if (PCI_EXT_CAP_ID(*header) == PCI_EXT_CAP_ID_DVSEC) {
      auto h1 = read32(config, pos + PCI_DVSEC_HEADER1);
      auto h2 = read32(config, pos + PCI_DVSEC_HEADER2);
      auto cap = read32(config, pos + (kDvsecMigCapOffset & ~3u));
      if (!h1 || !h2 || !cap)
        return absent(fmt::format("DVSEC at {:#x} runs past the {}-byte image", pos, config.size()));
      if (PCI_DVSEC_HEADER1_VID(*h1) == kNvidiaVendorId && PCI_DVSEC_HEADER2_ID(*h2) == kNvidiaGpuCapDvsecId) {
        const auto word = static_cast<std::uint16_t>(*cap >> ((kDvsecMigCapOffset & 3u) * 8));
        const bool supported = (word & kMigSupportedWithCachedResmem) != 0;
        return MigDetection{
            !supported, static_cast<unsigned>(pos),
            fmt::format("NVIDIA DVSEC {} at {:#x}, word at +{:#x} = {:#06x}: {} (R2)", kNvidiaGpuCapDvsecId, pos,
                        kDvsecMigCapOffset, word,
                        supported ? "MIG with cached resmem supported, no bug" : "bit 0 clear, MIG bug present")};
      }
    }

    const std::size_t next = PCI_EXT_CAP_NEXT(*header);
    if (next == 0) return absent("not in the extended capability list");
    if (next < PCI_CFG_SPACE_SIZE)
      return absent(fmt::format("extended capability at {:#x} points to {:#x}, below 0x100", pos, next));
    if (next >= config.size())
      return absent(fmt::format("extended capability at {:#x} points to {:#x}, past the {}-byte image", pos, next,
                                config.size()));
    if (seen.test((next - PCI_CFG_SPACE_SIZE) / 4))
      return absent(fmt::format("extended capability list loops at {:#x} -> {:#x}", pos, next));
    pos = next;
  }
}

}  // namespace nvgrace::pciemu
