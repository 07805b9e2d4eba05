// The calls nvgrace makes on a real device bound to vfio-pci, and on its
// IOMMU, behind two small interfaces: the kernel implementations here, and
// fakes in the tests, so that the fake-BAR overlay, the DMA table and the IRQ
// path are tested without a device.
//
// Opening follows the VFIO UAPI (R26): the iommufd device cdev
// (/dev/vfio/devices/vfioN bound to /dev/iommu, an IOAS attached) where the
// kernel has it, else the group/container API with the type1v2 IOMMU.
//
// Thread-safety: none; one owner (the HostDevice, driven by one connection).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "nvgrace/common/result.hpp"
#include "nvgrace/common/types.hpp"
#include "nvgrace/sys/fd.hpp"
#include "nvgrace/vfio/function.hpp"

namespace nvgrace::vfio::host {

class VfioDeviceIo {
 public:
  virtual ~VfioDeviceIo() = default;
  [[nodiscard]] virtual int fd() const = 0;
  // VFIO_DEVICE_GET_INFO.
  [[nodiscard]] virtual Result<DeviceInfo> info() = 0;
  // VFIO_DEVICE_GET_REGION_INFO with its whole capability chain (argsz retried).
  [[nodiscard]] virtual Result<std::vector<std::uint8_t>> region_info(unsigned index) = 0;
  // VFIO_DEVICE_GET_REGION_INFO exactly as asked: struct vfio_region_info
  // with `argsz`, the kernel's answer as it came back (argsz bytes, or the 32
  // of the struct when it asks for more room).
  [[nodiscard]] virtual Result<std::vector<std::uint8_t>> region_info_raw(unsigned index, std::uint32_t argsz) = 0;
  // VFIO_DEVICE_IOEVENTFD (struct vfio_device_ioeventfd as given).
  [[nodiscard]] virtual Result<void> ioeventfd(std::uint64_t offset, std::uint32_t flags, std::uint64_t data,
                                               int fd) = 0;
  // VFIO_DEVICE_GET_IRQ_INFO.
  [[nodiscard]] virtual Result<IrqInfo> irq_info(unsigned index) = 0;
  // pread/pwrite on the device fd at a region offset plus an offset.
  [[nodiscard]] virtual Result<std::size_t> pread(std::span<std::uint8_t> out, std::uint64_t at) = 0;
  [[nodiscard]] virtual Result<std::size_t> pwrite(std::span<const std::uint8_t> in, std::uint64_t at) = 0;
  // VFIO_DEVICE_SET_IRQS with a complete struct vfio_irq_set and its data.
  [[nodiscard]] virtual Result<void> set_irqs(std::span<const std::uint8_t> irq_set) = 0;
  // VFIO_DEVICE_RESET.
  [[nodiscard]] virtual Result<void> reset() = 0;
};

// The device's DMA address space (R28).
class Iommu {
 public:
  virtual ~Iommu() = default;
  [[nodiscard]] virtual std::string_view api() const = 0;  // "iommufd" or "type1"
  [[nodiscard]] virtual const DmaLimits& limits() const = 0;
  // Maps [iova, iova + size) to this process's memory at `vaddr`.
  [[nodiscard]] virtual Result<void> map(Iova iova, std::uint64_t size, HostVirtAddr vaddr, bool readable,
                                         bool writable) = 0;
  virtual Result<void> unmap(Iova iova, std::uint64_t size) = 0;

  // R41: the descriptors that hold this address space, for a successor
  // process (type1: container, group; iommufd: /dev/iommu), and the IOAS id
  // (iommufd; 0 otherwise). Closing them would tear the mappings down.
  [[nodiscard]] virtual std::vector<int> descriptors() const = 0;
  [[nodiscard]] virtual std::uint32_t ioas() const { return 0; }
  // R41, a successor process making the address space what its record says
  // (a predecessor may have died between changing the IOMMU and recording
  // the change). claim_mapping: [iova, +size) maps the memory at `vaddr`
  // here - kept if the mapping is there (the IOMMU keeps its pages pinned
  // across exec and the death of the process that mapped them), made again
  // if it is not. type1 also records the address and the owning process
  // (VFIO_UPDATE_VADDR: invalidated, then set, which moves the locked-memory
  // accounting here); iommufd in 6.12 has no such call
  // (IOMMU_IOAS_CHANGE_PROCESS came later). unmap_within: every mapping
  // wholly inside [first, last] removed; none there is no error.
  [[nodiscard]] virtual Result<void> claim_mapping(Iova iova, std::uint64_t size, HostVirtAddr vaddr, bool readable,
                                                   bool writable) = 0;
  [[nodiscard]] virtual Result<void> unmap_within(Iova first, Iova last) = 0;
};

enum class VfioApi { automatic, cdev, group };
[[nodiscard]] std::string_view to_string(VfioApi api);

struct VfioOpenOptions {
  Bdf bdf;
  VfioApi api = VfioApi::automatic;
  std::filesystem::path sysfs = "/sys";
  std::filesystem::path dev = "/dev";
  // Accept a no-IOMMU group (vfio.enable_unsafe_noiommu_mode=1): the device
  // is then not isolated - it can DMA anywhere - and no DMA mapping can be
  // made. Refused unless asked for.
  bool allow_noiommu = false;
};

struct OpenedVfio {
  std::unique_ptr<VfioDeviceIo> device;
  std::unique_ptr<Iommu> iommu;
};

// Opens the device through the API asked for (automatic: the cdev when
// <bdf>/vfio-dev/vfioN and /dev/iommu exist, else the group). Errors name
// what is missing (no vfio-dev, group not viable, EACCES on /dev/vfio/...).
// A no-IOMMU group (/dev/vfio/noiommu-N) is opened through the group API
// with VFIO_NOIOMMU_IOMMU, only with allow_noiommu; its Iommu refuses maps.
[[nodiscard]] Result<OpenedVfio> open_vfio(const VfioOpenOptions& opts);

// R41: the device a predecessor process opened, from the descriptors it
// handed over (the device fd, then Iommu::descriptors() in order, and the
// IOAS id for iommufd). Nothing is opened, bound or attached again: a group
// open elsewhere or a bound cdev refuses that, and the last close of a
// device fd resets the device. `api` is Iommu::api() of the predecessor.
[[nodiscard]] Result<OpenedVfio> adopt_vfio(std::string_view api, sys::UniqueFd device,
                                            std::vector<sys::UniqueFd> iommu, std::uint32_t ioas);

}  // namespace nvgrace::vfio::host
