// A PCI function as the VFIO UAPI presents it: device, region and IRQ info;
// access to its regions (config space included); DMA mappings into its
// address space (R28); interrupt eventfds (R29); reset. What the kernel's
// vfio-pci core offers a variant driver, and what a variant driver offers
// user space in turn.
//
// Implementations: a real function bound to vfio-pci, through the kernel's
// VFIO (vfio/host); an emulated Grace GPU as a Grace host sees it before any
// variant driver (vfio/emulated); and the nvgrace variant (vfio/variant),
// which is one Function over any other - the fake BARs over a memory source,
// as the kernel's nvgrace-gpu is one driver over any GH200. The vfio-user
// engine (vfio/user) serves any Function, and a VMM maps one the way it maps
// a VFIO device: region info, sparse areas, an fd.
//
// Thread-safety: as each implementation states; the vfio-user engine drives
// one function from one connection at a time.
#pragma once

#include <linux/vfio.h>

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "nvgrace/common/result.hpp"
#include "nvgrace/common/types.hpp"
#include "nvgrace/pciemu/device_config.hpp"
#include "nvgrace/sys/fd_table.hpp"

namespace nvgrace::vfio {

// VFIO_PCI_*_REGION_INDEX (linux/vfio.h) as typed indexes.
inline constexpr RegionIndex kBar0Region{VFIO_PCI_BAR0_REGION_INDEX};
inline constexpr RegionIndex kBar2Region{VFIO_PCI_BAR2_REGION_INDEX};
inline constexpr RegionIndex kBar4Region{VFIO_PCI_BAR4_REGION_INDEX};
inline constexpr RegionIndex kRomRegion{VFIO_PCI_ROM_REGION_INDEX};
inline constexpr RegionIndex kConfigRegion{VFIO_PCI_CONFIG_REGION_INDEX};
inline constexpr unsigned kRegionCount = VFIO_PCI_NUM_REGIONS;
// BAR i is region i.
[[nodiscard]] constexpr RegionIndex bar_region(BarIndex b) { return RegionIndex{b.value()}; }
[[nodiscard]] constexpr std::optional<BarIndex> region_bar(RegionIndex r) {
  if (r.value() > VFIO_PCI_BAR5_REGION_INDEX) return std::nullopt;
  return BarIndex{r.value()};
}

struct DeviceInfo {
  std::uint32_t flags = 0;  // VFIO_DEVICE_FLAGS_*
  std::uint32_t num_regions = 0;
  std::uint32_t num_irqs = 0;
};

struct IrqInfo {
  std::uint32_t index = 0;
  std::uint32_t flags = 0;  // VFIO_IRQ_INFO_*
  std::uint32_t count = 0;
};

// The complete VFIO_DEVICE_GET_REGION_INFO answer for one region: struct
// vfio_region_info followed by its capability chain (capability offsets are
// relative to the struct), and the fd a client maps the region through, at
// info.offset plus each sparse area's offset. fd -1: nothing to map.
struct RegionInfoView {
  std::span<const std::uint8_t> bytes;  // owned by the function, valid while it lives
  int fd = -1;                          // borrowed
};

struct IovaRange {
  Iova start;
  Iova last;  // inclusive
};

// What the function's DMA address space accepts (R28).
struct DmaLimits {
  std::uint64_t pgsizes = 0;           // bitmap of supported IOMMU page sizes
  std::uint32_t max_maps = 65535;      // mappings that may exist at once
  std::vector<IovaRange> iova_ranges;  // usable IOVA ranges, ascending
  bool needs_fd = false;               // a mapping without an fd cannot be honoured
};

// One DMA_MAP: the client's memory [offset, offset + size) of `fd` at
// [iova, iova + size) of the function's address space.
struct DmaMapping {
  Iova iova;
  std::uint64_t size = 0;
  int fd = -1;  // borrowed; -1 when the client sent none
  std::uint64_t offset = 0;
  bool readable = false;
  bool writable = false;
};

// One VFIO_DEVICE_SET_IRQS (flags are VFIO_IRQ_SET_*), already checked
// against the function's IRQ info by the caller.
struct IrqSet {
  std::uint32_t flags = 0;
  std::uint32_t index = 0;
  std::uint32_t start = 0;
  std::uint32_t count = 0;
  std::span<const std::uint8_t> bools;  // DATA_BOOL: one byte per interrupt
  std::span<const int> fds;             // DATA_EVENTFD: one per interrupt; empty: de-assign
};

class Function {
 public:
  virtual ~Function() = default;

  [[nodiscard]] virtual DeviceInfo info() const = 0;
  [[nodiscard]] virtual Result<RegionInfoView> region_info(RegionIndex index) = 0;
  [[nodiscard]] virtual Result<IrqInfo> irq(unsigned index) const = 0;

  // Region access at (index, offset); config space is kConfigRegion. Errors
  // carry the errno to report.
  [[nodiscard]] virtual Result<std::size_t> read(RegionIndex index, std::uint64_t offset,
                                                 std::span<std::uint8_t> out) = 0;
  [[nodiscard]] virtual Result<std::size_t> write(RegionIndex index, std::uint64_t offset,
                                                  std::span<const std::uint8_t> in) = 0;

  // VFIO_DEVICE_RESET and what follows it (R14, R20, R31).
  virtual Result<void> reset() = 0;

  // R28. The caller keeps the table of mappings (overlaps, exact unmaps,
  // counts); the function applies one mapping at a time. A function that
  // keeps the memory mapped duplicates the fd it needs.
  [[nodiscard]] virtual const DmaLimits& dma_limits() const = 0;
  [[nodiscard]] virtual Result<void> dma_map(const DmaMapping& m) = 0;
  virtual Result<void> dma_unmap(Iova iova, std::uint64_t size) = 0;

  // R29: the eventfds go to the function's interrupt path (for a real one,
  // VFIO_DEVICE_SET_IRQS); a function that keeps them duplicates them.
  [[nodiscard]] virtual Result<void> set_irqs(const IrqSet& s) = 0;

  // R41: everything a successor server needs to carry on with this function
  // exactly where it is - a JSON object, and the descriptors it names by
  // their index in `fds` (borrowed: they live as long as the function).
  // ENOTSUP (the default) where the function cannot be handed over.
  [[nodiscard]] virtual Result<nlohmann::json> save_state(sys::FdTable& fds) const;
  // The successor's side: the same function, built afresh from the same
  // command line, takes on the saved state, taking the descriptors it keeps
  // from `fds`. An error leaves it unusable; the caller refuses the
  // hand-over.
  [[nodiscard]] virtual Result<void> restore_state(const nlohmann::json& state, sys::FdTable& fds);
  // After restore_state(), in the process that goes on serving (never in a
  // successor that only checks it could): claim what the kernel ties to the
  // process that made it (a real device's DMA mappings, R28). Nothing, by
  // default.
  [[nodiscard]] virtual Result<void> claim_state() { return {}; }
};

// Config-space helpers over any function: a little-endian value of 1, 2 or
// 4 bytes at `offset`, as a guest or a driver reads and writes registers.
[[nodiscard]] Result<std::uint32_t> config_read(Function& f, ConfigOffset offset, std::size_t width);
Result<void> config_write(Function& f, ConfigOffset offset, std::size_t width, std::uint32_t value);

// The whole config space (`size` bytes) dword by dword, as a VMM or the
// guest's lspci reads it: never one access across a fake BAR's register
// pair, which the kernel's nvgrace-gpu (and the variant, R39) emulates only
// for the first pair an access touches.
[[nodiscard]] Result<std::vector<std::uint8_t>> config_dump(Function& f, std::size_t size);

// A function's BARs as the guest has programmed them, read the way a VMM
// reads them: the BAR registers through config space and each BAR's size
// from its region info (VFIO reports the BAR size as the region size). A
// BAR is being sized (R21) when every writable address bit - the whole
// 64-bit BAR, both halves - reads back set. Only 64-bit memory BARs (all a
// Grace GPU has) are reported; `role` is BarRole::device for every BAR.
struct DecodeState {
  bool memory_decode = false;  // COMMAND bit 1
  pciemu::BarStates bars;
};
[[nodiscard]] Result<DecodeState> read_decode_state(Function& f, std::span<const std::uint64_t> bar_sizes);
// Every region's size, from its region info (BAR i at [i]); 0 for an absent one.
[[nodiscard]] Result<std::vector<std::uint64_t>> region_sizes(Function& f);

}  // namespace nvgrace::vfio
