// A real device bound to vfio-pci, served with nvgrace's variant behaviour on
// top (R26-R31): what the kernel's nvgrace-gpu does, in user space.
//
// - Config space: the VFIO config region (which vfio-pci virtualizes), except
//   the bytes of the fake BAR2/BAR4 registers (0x18-0x1F resmem, 0x20-0x27
//   usemem), which nvgrace's model owns (R11-R14, R26): the real BAR values
//   never reach the guest and the guest's never reach the device.
// - Regions: the device's own BARs are the kernel's, with its region info and
//   capability chain; the client maps them through the VFIO device fd at
//   VFIO's region offset, and REGION_READ/WRITE are pread/pwrite on it (R27).
//   The fake BAR2/BAR4 are the region model over the memory backend (R16-R18).
// - DMA (R28): the client's memory is mapped into this process and then into
//   the device's IOMMU address space (iommufd IOAS or type1 container).
// - Interrupts (R29): the client's eventfds go to VFIO_DEVICE_SET_IRQS.
// - Reset: VFIO_DEVICE_RESET, fake BARs zeroed (R14), then the readiness wait
//   (R20, or R31 when the device has a CXL Device DVSEC).
//
// A device whose MSI-X table or PBA lies in a BAR that a fake BAR replaces is
// refused (R27). Without fake BARs (no memory properties, R5; or the kernel's
// nvgrace-gpu already bound) everything is the kernel's.
//
// Thread-safety: one thread at a time (the vfio-user engine drives one device
// from one connection).
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "nvgrace/pciemu/device_config.hpp"
#include "nvgrace/pciemu/layout.hpp"
#include "nvgrace/vfio/backend.hpp"
#include "nvgrace/vfio/host/vfio_io.hpp"
#include "nvgrace/vfio/readiness.hpp"
#include "nvgrace/vfio/regions.hpp"
#include "nvgrace/vfio/region_info.hpp"
#include "nvgrace/vfio/vfio_device.hpp"

namespace nvgrace::vfio::host {

enum class ReadinessCheck {
  automatic,  // R31 when the device has a CXL Device DVSEC, else R20's BAR0 registers
  skip,       // a stand-in device without the registers: no wait
};

struct HostDeviceOptions {
  std::string name;                          // for messages: the BDF
  std::optional<pciemu::Layout> layout;      // fake BARs; nullopt: plain passthrough (R5)
  std::unique_ptr<MemoryBackend> backend;    // behind the fake BARs (with a layout)
  std::uint16_t device_id = 0;               // the Grace identity the fake BARs are built for (R1)
  ReadinessCheck readiness = ReadinessCheck::automatic;
  ReadinessOptions ready;
  // Hand the client the backend's fd for the fake BARs (/dev/mem). Off: the
  // fake BARs are reached through REGION_READ/WRITE only, for a client not
  // to be trusted with an fd that maps physical memory.
  bool mmap_fake_bars = true;
};

class HostDevice final : public VfioDevice {
 public:
  [[nodiscard]] static Result<std::unique_ptr<HostDevice>> create(OpenedVfio vfio, HostDeviceOptions opts);

  DeviceInfo info() const override { return info_; }
  Result<RegionInfoView> region_info(unsigned index) override;
  Result<IrqInfo> irq(unsigned index) const override;
  Result<std::size_t> read(unsigned index, std::uint64_t offset, std::span<std::uint8_t> out) override;
  Result<std::size_t> write(unsigned index, std::uint64_t offset, std::span<const std::uint8_t> in) override;
  Result<void> reset() override;
  const DmaLimits& dma_limits() const override { return vfio_.iommu->limits(); }
  Result<void> dma_map(const DmaMapping& m) override;
  Result<void> dma_unmap(std::uint64_t iova, std::uint64_t size) override;
  Result<void> set_irqs(const IrqSet& s) override;

  [[nodiscard]] std::string_view vfio_api() const { return vfio_.iommu->api(); }
  [[nodiscard]] bool has_fake_bars() const { return layout_.has_value(); }
  [[nodiscard]] std::size_t dma_mappings() const { return dma_.size(); }
  // Which readiness rule applies after a reset: "R31 (CXL DVSEC at 0x...)",
  // "R20 (BAR0 registers)", or "skipped".
  [[nodiscard]] std::string readiness_rule() const;
  // The bytes of config space the model owns (the fake BAR registers).
  [[nodiscard]] bool model_owns(std::uint64_t config_offset) const;

 private:
  HostDevice() = default;
  struct Region {
    std::vector<std::uint8_t> info;  // vfio_region_info + caps, as the client gets it
    std::uint64_t size = 0;
    std::uint64_t offset = 0;        // in the VFIO device fd
    int fd = -1;                     // what the client maps, -1: none
    const pciemu::MemRegion* mem = nullptr;  // a fake BAR's memory
  };
  Result<std::size_t> config_access(std::uint64_t offset, std::uint8_t* buf, std::size_t len, bool write);
  Result<std::size_t> memory_access(const Region& r, std::uint64_t offset, std::uint8_t* buf, std::size_t len,
                                    bool write);
  Result<void> wait_ready();

  OpenedVfio vfio_;
  std::string name_;
  DeviceInfo info_;
  std::vector<Region> regions_;
  std::optional<pciemu::Layout> layout_;
  std::unique_ptr<MemoryBackend> backend_;
  std::optional<pciemu::DeviceConfig> overlay_;  // owns the fake BARs' registers (R11-R14)
  std::uint64_t config_size_ = 0;
  std::uint64_t config_offset_ = 0;
  ReadinessCheck readiness_ = ReadinessCheck::automatic;
  ReadinessOptions ready_opts_;
  std::optional<unsigned> cxl_dvsec_;
  bool ready_ = false;
  struct DmaMap {
    std::uint64_t size = 0;
    Mapping memory;  // the client's memory, mapped here for the IOMMU to pin
  };
  std::map<std::uint64_t, DmaMap> dma_;  // by IOVA
  std::uint64_t dropped_ = 0;
};

// Every difference between the model's region table and what a host (the
// kernel's nvgrace-gpu) reports, one line each. Empty when they agree (R16).
[[nodiscard]] std::vector<std::string> compare_regions(const std::vector<RegionDesc>& model,
                                                       const std::vector<DecodedRegionInfo>& host);

}  // namespace nvgrace::vfio::host
