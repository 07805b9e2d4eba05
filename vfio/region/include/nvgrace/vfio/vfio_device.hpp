// A device as the VFIO UAPI presents it: what the vfio-user engine serves and
// what a VMM maps. Device, region and IRQ info; region access; DMA mappings
// into the device's address space (R28); interrupt eventfds (R29); reset.
//
// Implemented by the emulated variant device (VariantDevice, this module) and
// by a real device bound to vfio-pci with nvgrace's fake BARs on top
// (vfio/host). The vfio-user engine (vfio/user) sees only this interface.
//
// Thread-safety: as each implementation states; the vfio-user engine drives
// one device from one connection at a time.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "nvgrace/common/result.hpp"

namespace nvgrace::vfio {

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
  std::span<const std::uint8_t> bytes;  // owned by the device, valid while it lives
  int fd = -1;                          // borrowed
};

struct IovaRange {
  std::uint64_t start = 0;
  std::uint64_t last = 0;  // inclusive
};

// What the device's DMA address space accepts (R28).
struct DmaLimits {
  std::uint64_t pgsizes = 0;           // bitmap of supported IOMMU page sizes
  std::uint32_t max_maps = 65535;      // mappings that may exist at once
  std::vector<IovaRange> iova_ranges;  // usable IOVA ranges, ascending
  bool needs_fd = false;               // a mapping without an fd cannot be honoured
};

// One DMA_MAP: the client's memory [offset, offset + size) of `fd` at
// [iova, iova + size) of the device's address space.
struct DmaMapping {
  std::uint64_t iova = 0;
  std::uint64_t size = 0;
  int fd = -1;  // borrowed; -1 when the client sent none
  std::uint64_t offset = 0;
  bool readable = false;
  bool writable = false;
};

// One VFIO_DEVICE_SET_IRQS (flags are VFIO_IRQ_SET_*), already checked
// against the device's IRQ info by the caller.
struct IrqSet {
  std::uint32_t flags = 0;
  std::uint32_t index = 0;
  std::uint32_t start = 0;
  std::uint32_t count = 0;
  std::span<const std::uint8_t> bools;  // DATA_BOOL: one byte per interrupt
  std::span<const int> fds;             // DATA_EVENTFD: one per interrupt; empty: de-assign
};

class VfioDevice {
 public:
  virtual ~VfioDevice() = default;

  [[nodiscard]] virtual DeviceInfo info() const = 0;
  [[nodiscard]] virtual Result<RegionInfoView> region_info(unsigned index) = 0;
  [[nodiscard]] virtual Result<IrqInfo> irq(unsigned index) const = 0;

  // Region access at (index, offset). Errors carry the errno to report.
  [[nodiscard]] virtual Result<std::size_t> read(unsigned index, std::uint64_t offset, std::span<std::uint8_t> out) = 0;
  [[nodiscard]] virtual Result<std::size_t> write(unsigned index, std::uint64_t offset,
                                                  std::span<const std::uint8_t> in) = 0;

  // VFIO_DEVICE_RESET and what follows it (R14, R20, R31).
  virtual Result<void> reset() = 0;

  // R28. The caller keeps the table of mappings (overlaps, exact unmaps,
  // counts); the device applies one mapping at a time. A device that keeps
  // the memory mapped duplicates the fd it needs.
  [[nodiscard]] virtual const DmaLimits& dma_limits() const = 0;
  [[nodiscard]] virtual Result<void> dma_map(const DmaMapping& m) = 0;
  virtual Result<void> dma_unmap(std::uint64_t iova, std::uint64_t size) = 0;

  // R29: the eventfds go to the device's interrupt path (for a real device,
  // VFIO_DEVICE_SET_IRQS); a device that keeps them duplicates them.
  [[nodiscard]] virtual Result<void> set_irqs(const IrqSet& s) = 0;
};

}  // namespace nvgrace::vfio
