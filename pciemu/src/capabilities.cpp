#include "nvgrace/pciemu/capabilities.hpp"

#include <bitset>

#include <fmt/format.h>
#include <linux/pci_regs.h>

namespace nvgrace::pciemu {
namespace {

std::optional<std::uint32_t> read_le(std::span<const std::uint8_t> img, std::size_t off, std::size_t width) {
  if (off > img.size() || img.size() - off < width) return std::nullopt;
  std::uint32_t v = 0;
  for (std::size_t i = 0; i < width; ++i) v |= static_cast<std::uint32_t>(img[off + i]) << (8 * i);
  return v;
}

}  // namespace

CapabilityHit find_capability(std::span<const std::uint8_t> config, std::uint8_t id) {
  auto status = read_le(config, PCI_STATUS, 2);
  auto ptr = read_le(config, PCI_CAPABILITY_LIST, 1);
  if (!status || !ptr) return {std::nullopt, fmt::format("config image of {} bytes has no header", config.size())};
  if (!(*status & PCI_STATUS_CAP_LIST)) return {};
  std::bitset<PCI_CFG_SPACE_SIZE / 4> seen;
  std::size_t pos = *ptr & ~3u;
  while (pos != 0) {
    if (pos < PCI_STD_HEADER_SIZEOF) return {std::nullopt, fmt::format("capability pointer {:#x} into the header", pos)};
    auto head = read_le(config, pos, 2);
    if (!head || pos >= PCI_CFG_SPACE_SIZE)
      return {std::nullopt, fmt::format("capability at {:#x} lies past the {}-byte image", pos, config.size())};
    if (seen.test(pos / 4)) return {std::nullopt, fmt::format("capability list loops at {:#x}", pos)};
    seen.set(pos / 4);
    if ((*head & 0xFF) == id) return {static_cast<unsigned>(pos), {}};
    pos = (*head >> 8) & ~3u;
  }
  return {};
}

CapabilityHit find_dvsec(std::span<const std::uint8_t> config, std::uint16_t vendor, std::uint16_t dvsec_id) {
  if (config.size() <= PCI_CFG_SPACE_SIZE)
    return {std::nullopt, fmt::format("config image is {} bytes, no extended space", config.size())};
  // One bit per dword of extended space: a revisited header is a loop.
  std::bitset<(PCI_CFG_SPACE_EXP_SIZE - PCI_CFG_SPACE_SIZE) / 4> seen;
  std::size_t pos = PCI_CFG_SPACE_SIZE;
  for (;;) {
    auto header = read_le(config, pos, 4);
    if (!header)
      return {std::nullopt, fmt::format("extended capability at {:#x} lies past the {}-byte image", pos, config.size())};
    // All-zero or all-ones at 0x100 means "no extended capabilities".
    if (pos == PCI_CFG_SPACE_SIZE && (*header == 0 || *header == 0xFFFFFFFFu))
      return {std::nullopt, "no extended capabilities"};
    seen.set((pos - PCI_CFG_SPACE_SIZE) / 4);
    if (PCI_EXT_CAP_ID(*header) == PCI_EXT_CAP_ID_DVSEC) {
      auto h1 = read_le(config, pos + PCI_DVSEC_HEADER1, 4);
      auto h2 = read_le(config, pos + PCI_DVSEC_HEADER2, 2);
      if (!h1 || !h2) return {std::nullopt, fmt::format("DVSEC at {:#x} runs past the {}-byte image", pos, config.size())};
      if (PCI_DVSEC_HEADER1_VID(*h1) == vendor && PCI_DVSEC_HEADER2_ID(*h2) == dvsec_id)
        return {static_cast<unsigned>(pos), {}};
    }
    const std::size_t next = PCI_EXT_CAP_NEXT(*header);
    if (next == 0) return {};
    if (next < PCI_CFG_SPACE_SIZE)
      return {std::nullopt, fmt::format("extended capability at {:#x} points to {:#x}, below 0x100", pos, next)};
    if (next >= config.size())
      return {std::nullopt, fmt::format("extended capability at {:#x} points to {:#x}, past the {}-byte image", pos,
                                        next, config.size())};
    if (seen.test((next - PCI_CFG_SPACE_SIZE) / 4))
      return {std::nullopt, fmt::format("extended capability list loops at {:#x} -> {:#x}", pos, next)};
    pos = next;
  }
}

std::optional<MsixLocation> find_msix(std::span<const std::uint8_t> config) {
  const auto hit = find_capability(config, PCI_CAP_ID_MSIX);
  if (!hit.offset) return std::nullopt;
  const unsigned c = *hit.offset;
  auto flags = read_le(config, c + PCI_MSIX_FLAGS, 2);
  auto table = read_le(config, c + PCI_MSIX_TABLE, 4);
  auto pba = read_le(config, c + PCI_MSIX_PBA, 4);
  if (!flags || !table || !pba) return std::nullopt;
  return MsixLocation{c,
                      (*flags & PCI_MSIX_FLAGS_QSIZE) + 1,
                      *table & PCI_MSIX_TABLE_BIR,
                      *table & PCI_MSIX_TABLE_OFFSET,
                      *pba & PCI_MSIX_PBA_BIR,
                      *pba & PCI_MSIX_PBA_OFFSET};
}

CxlMemoryStatus decode_cxl_range_size_low(std::uint32_t word) {
  const unsigned code = (word >> 13) & 0x7;
  // 1 s << 2 * min(code, 4): 1, 4, 16, 64, 256 seconds.
  const auto timeout = std::chrono::seconds(std::int64_t{1} << (2 * std::min(code, 4u)));
  return {(word & kCxlMemInfoValid) != 0, (word & kCxlMemActive) != 0, timeout};
}

}  // namespace nvgrace::pciemu
