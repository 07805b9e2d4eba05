// A real PCI function bound to vfio-pci (or to the kernel's nvgrace-gpu),
// as the kernel's VFIO presents it (R26-R29): the Function the variant goes
// on for a real device, as the kernel's nvgrace-gpu goes on vfio-pci core.
//
// - Config space: the VFIO config region, which vfio-pci virtualizes.
// - Regions: the kernel's, with its region info and capability chain; the
//   client maps them through the VFIO device fd at VFIO's region offset, and
//   REGION_READ/WRITE are pread/pwrite on it (R27).
// - DMA (R28): the client's memory is mapped into this process and then into
//   the device's IOMMU address space (iommufd IOAS or type1 container).
// - Interrupts (R29): the client's eventfds go to VFIO_DEVICE_SET_IRQS.
// - Reset: VFIO_DEVICE_RESET; a device that offers none says so.
//
// Thread-safety: region accesses may come from any thread (pread/pwrite);
// DMA maps and IRQ settings from one (the connection that owns the client).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "nvgrace/sys/fd.hpp"
#include "nvgrace/vfio/function.hpp"
#include "nvgrace/vfio/host/vfio_io.hpp"
#include "nvgrace/vfio/region_info.hpp"
#include "nvgrace/vfio/regions.hpp"

namespace nvgrace::vfio::host {

class HostFunction final : public Function {
 public:
  // `name`: for messages (the BDF).
  [[nodiscard]] static Result<std::unique_ptr<HostFunction>> create(OpenedVfio vfio, std::string name);

  DeviceInfo info() const override { return info_; }
  Result<RegionInfoView> region_info(RegionIndex index) override;
  Result<IrqInfo> irq(unsigned index) const override;
  Result<std::size_t> read(RegionIndex index, std::uint64_t offset, std::span<std::uint8_t> out) override;
  Result<std::size_t> write(RegionIndex index, std::uint64_t offset, std::span<const std::uint8_t> in) override;
  Result<void> reset() override;
  const DmaLimits& dma_limits() const override { return limits_; }
  Result<void> dma_map(const DmaMapping& m) override;
  Result<void> dma_unmap(Iova iova, std::uint64_t size) override;
  Result<void> set_irqs(const IrqSet& s) override;

  // R41: the device's VFIO descriptors and its DMA table (each mapping with
  // the client's memory fd) for a successor process. The successor opens
  // nothing: it is built over adopt_vfio() from these same descriptors
  // (host_state() finds them), and restore_state() maps the client's memory
  // again; claim_state() makes the IOMMU's mappings this process's. The
  // interrupt eventfds need nothing: VFIO holds them. The device is never
  // reset and its mappings never leave the IOMMU.
  [[nodiscard]] Result<nlohmann::json> save_state(sys::FdTable& fds) const override;
  [[nodiscard]] Result<void> restore_state(const nlohmann::json& state, sys::FdTable& fds) override;
  [[nodiscard]] Result<void> claim_state() override;

  [[nodiscard]] std::string_view vfio_api() const { return vfio_.iommu->api(); }
  [[nodiscard]] std::size_t dma_mappings() const { return dma_.size(); }
  [[nodiscard]] VfioDeviceIo& io() { return *vfio_.device; }

 private:
  HostFunction() = default;
  struct Region {
    std::vector<std::uint8_t> info;  // vfio_region_info + caps, as the kernel gave them
    std::uint64_t size = 0;
    std::uint64_t offset = 0;        // in the VFIO device fd
    int fd = -1;                     // what the client maps, -1: none
    int refused = 0;                 // the errno the kernel answered its info with (VGA on a non-VGA device)
  };
  OpenedVfio vfio_;
  std::string name_;
  DeviceInfo info_;
  DmaLimits limits_;  // the IOMMU's, counting mappings a predecessor made
  std::vector<Region> regions_;
  struct DmaMap {
    std::uint64_t size = 0;
    sys::Mapping memory;  // the client's memory, mapped here for the IOMMU to pin
    sys::UniqueFd fd;     // the client's fd, for a successor (R41)
    std::uint64_t offset = 0;
    bool readable = false, writable = false;
  };
  std::map<Iova, DmaMap> dma_;
};

// R41: a device state a HostFunction saved, within `device_state` (itself, or
// the function under a variant), if it is one - named by its BDF - and the
// VFIO device it names, adopted from `fds` (adopt_vfio()).
[[nodiscard]] const nlohmann::json* host_state(const nlohmann::json& device_state);
[[nodiscard]] Result<OpenedVfio> adopt_saved_vfio(const nlohmann::json& host_state, sys::FdTable& fds);

// Every difference between the model's region table and what a host (the
// kernel's nvgrace-gpu) reports, one line each. Empty when they agree (R16).
[[nodiscard]] std::vector<std::string> compare_regions(const std::vector<RegionDesc>& model,
                                                       const std::vector<DecodedRegionInfo>& host);

}  // namespace nvgrace::vfio::host
