// The nvgrace variant device as the VFIO UAPI presents it (nvgrace-model.md
// R14, R16-R20, R31): device and region info, read/write at (region, offset), an fd
// and offset to mmap for each sparse area, and reset.
//
// Concurrency: memory reads, writes and mmap lookups (regions 2 and 4) may run
// concurrently with each other from any number of threads. Config-space and
// BAR0 accesses are serialised internally. reset() excludes everything else:
// it waits for accesses in flight and blocks new ones until it is done.
//
// Ownership: the device owns its config space, its BAR0 register file and its
// memory backend.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <span>
#include <vector>

#include "nvgrace/common/result.hpp"
#include "nvgrace/pciemu/device_config.hpp"
#include "nvgrace/pciemu/layout.hpp"
#include "nvgrace/vfio/backend.hpp"
#include "nvgrace/vfio/readiness.hpp"
#include "nvgrace/vfio/fd.hpp"
#include "nvgrace/vfio/regions.hpp"
#include "nvgrace/vfio/vfio_device.hpp"

namespace nvgrace::vfio {

struct MmapArea {
  int fd = -1;
  std::uint64_t fd_offset = 0;
  std::uint64_t length = 0;
  CacheMode cache = CacheMode::write_back;
};

// The emulated variant device: config space, BAR0 registers, fake BAR2/BAR4
// over a memory backend. It does no DMA and raises no interrupts: DMA maps
// and interrupt eventfds are accepted (the vfio-user engine keeps the table)
// and not used.
class VariantDevice final : public VfioDevice {
 public:
  // The layout must have fake BARs; `config` must describe the same BARs.
  [[nodiscard]] static Result<std::unique_ptr<VariantDevice>> create(pciemu::DeviceConfig config,
                                                                     pciemu::Layout layout,
                                                                     std::unique_ptr<MemoryBackend> backend,
                                                                     ReadinessOptions readiness = {});

  [[nodiscard]] DeviceInfo info() const override;
  [[nodiscard]] Result<RegionDesc> region(unsigned index) const;
  [[nodiscard]] Result<IrqInfo> irq(unsigned index) const override;
  // The region's VFIO_DEVICE_GET_REGION_INFO bytes, built once at creation,
  // and for BAR2/BAR4 the backing fd with the region offset being the
  // memory's offset in it. Handing out the fd of a fake BAR waits for
  // readiness first, like an mmap (R20).
  [[nodiscard]] Result<RegionInfoView> region_info(unsigned index) override;

  // R17: offset at or past the region size is EINVAL; an access running past
  // it is cut short (the count returned says how much was done); in a fake
  // BAR, bytes in [length, BAR size) read 0xFF and writes there are dropped
  // and counted. A first memory access waits for readiness (R20) and fails
  // with ETIME when it does not come.
  [[nodiscard]] Result<std::size_t> read(unsigned index, std::uint64_t offset, std::span<std::uint8_t> out) override;
  [[nodiscard]] Result<std::size_t> write(unsigned index, std::uint64_t offset,
                                          std::span<const std::uint8_t> in) override;

  // R18: what to mmap for [offset, offset + length) of a fake BAR. Only
  // [0, memory length) may be mapped; anything reaching past it is EINVAL.
  [[nodiscard]] Result<MmapArea> mmap(unsigned index, std::uint64_t offset, std::uint64_t length);

  // Device reset (R14, R20): config space to power-on values (fake BARs 0),
  // readiness re-armed.
  Result<void> reset() override;

  // No DMA engine and no interrupt source: accepted, unused. Page size is
  // the host's; any IOVA.
  [[nodiscard]] const DmaLimits& dma_limits() const override { return dma_limits_; }
  [[nodiscard]] Result<void> dma_map(const DmaMapping&) override { return {}; }
  Result<void> dma_unmap(std::uint64_t, std::uint64_t) override { return {}; }
  [[nodiscard]] Result<void> set_irqs(const IrqSet&) override { return {}; }

  [[nodiscard]] std::uint64_t dropped_writes() const { return dropped_.load(std::memory_order_relaxed); }
  [[nodiscard]] const pciemu::Layout& layout() const { return layout_; }
  [[nodiscard]] const MemoryBackend& backend() const { return *backend_; }

  // The guest's view of its BARs (for a VMM, R21).
  [[nodiscard]] pciemu::BarStates bar_states() const;
  // Memory decode and the BARs, read together under one lock (the VMM asks
  // on every config write, R21).
  struct DecodeState {
    bool memory_decode = false;
    pciemu::BarStates bars;
  };
  [[nodiscard]] DecodeState decode_state() const;
  [[nodiscard]] bool memory_decode() const;

 private:
  explicit VariantDevice(pciemu::DeviceConfig config) : config_(std::move(config)) {}
  [[nodiscard]] Result<void> wait_ready();
  [[nodiscard]] std::uint32_t status_reg() const;  // R20: 0xFF once ready_after has passed
  // R31: the CXL DVSEC's Range 1 Size Low as it reads now: MEM_INFO_VALID once
  // ready_after has passed, MEM_ACTIVE active_after later.
  [[nodiscard]] std::uint32_t cxl_status(std::uint32_t stored) const;
  void overlay_live_registers(std::uint64_t offset, std::uint8_t* buf, std::size_t count) const;
  [[nodiscard]] const pciemu::MemRegion* mem_region(unsigned index) const;
  Result<std::size_t> access(unsigned index, std::uint64_t offset, std::uint8_t* buf, std::size_t len, bool is_write);

  pciemu::DeviceConfig config_;
  pciemu::Layout layout_;
  std::vector<RegionDesc> regions_;
  std::vector<std::vector<std::uint8_t>> region_info_;  // per region: vfio_region_info + caps
  DmaLimits dma_limits_;
  std::unique_ptr<MemoryBackend> backend_;
  Mapping bar0_;  // BAR0 register file (anonymous, zero until written)
  ReadinessOptions readiness_;
  std::optional<unsigned> cxl_dvsec_;  // R31: readiness from the CXL DVSEC instead of BAR0

  mutable std::shared_mutex reset_mutex_;  // shared: accesses; exclusive: reset
  mutable std::mutex config_mutex_;        // config space and BAR0 registers
  std::mutex ready_mutex_;                 // one waiter polls, the others wait on it
  std::atomic<bool> ready_{false};
  std::chrono::steady_clock::time_point armed_at_;
  std::atomic<std::uint64_t> dropped_{0};
};

}  // namespace nvgrace::vfio
