#include "nvgrace/vfio/emulated/function.hpp"

#include <fcntl.h>
#include <linux/vfio.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>

#include "nvgrace/pciemu/capabilities.hpp"
#include "nvgrace/pciemu/config_space.hpp"
#include "nvgrace/pciemu/registers.hpp"
#include "nvgrace/sys/memfd.hpp"
#include "nvgrace/vfio/region_info.hpp"
#include "nvgrace/vfio/state.hpp"

namespace nvgrace::vfio::emulated {

Result<std::unique_ptr<EmulatedFunction>> EmulatedFunction::create(const pciemu::DeviceConfigParams& params,
                                                                   Timing timing) {
  for (const auto& b : params.bars)
    if (b.mem) return fail_errno(EINVAL, "BAR{}: an emulated function's BARs are its own; memory behind a BAR is the "
                                         "variant's (R37)", b.index);
  auto config = pciemu::DeviceConfig::build(params);
  if (!config) return fail(config.error());
  std::unique_ptr<EmulatedFunction> f(new EmulatedFunction(std::move(*config)));
  f->regions_ = region_table(params.bars, pciemu::ConfigSpace::kSize);
  for (const auto& r : f->regions_) f->region_info_.push_back(encode_region_info(r, region_info_size(r)));
  if (auto bar0 = f->config_.bar(BarIndex{0})) {
    auto fd = sys::make_memfd("nvgrace-bar0", bar0->size);
    if (!fd) return fail(fd.error().context("BAR0 register file"));
    auto map = sys::Mapping::map(fd->get(), 0, bar0->size, sys::huge_alignment(bar0->size), PROT_READ | PROT_WRITE,
                                 MAP_SHARED | MAP_NORESERVE);
    if (!map) return fail(map.error().context("BAR0 register file"));
    f->bar0_fd_ = std::move(*fd);
    f->bar0_ = std::move(*map);
  }
  f->config_.reset();
  f->dma_limits_.pgsizes = sys::page_size();
  f->timing_ = timing;
  f->cxl_dvsec_ =
      pciemu::find_dvsec(f->config_.space().bytes(), pciemu::kCxlVendorId, pciemu::kCxlDeviceDvsecId).offset;
  f->armed_at_ = std::chrono::steady_clock::now();
  return f;
}

DeviceInfo EmulatedFunction::info() const {
  return {VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET, VFIO_PCI_NUM_REGIONS, VFIO_PCI_NUM_IRQS};
}

Result<RegionInfoView> EmulatedFunction::region_info(RegionIndex index) {
  if (index.value() >= region_info_.size())
    return fail_errno(EINVAL, "region {} does not exist (0..{})", index, region_info_.size() - 1);
  // A Grace GPU is no VGA device: vfio-pci refuses that region's info (R39).
  if (index.value() == VFIO_PCI_VGA_REGION_INDEX)
    return fail_errno(EINVAL, "region {} (VGA): the GPU is no VGA device", index);
  return RegionInfoView{region_info_[index.value()], -1};
}

// As vfio-pci answers for a PCIe function with INTx, no MSI and MSI-X
// (R39, seen through the kernel oracle on 6.12): MSI-X resizes
// dynamically (no NORESIZE), every other index does not; ERR and REQ are
// one eventfd each.
Result<IrqInfo> EmulatedFunction::irq(unsigned index) const {
  switch (index) {
    case VFIO_PCI_INTX_IRQ_INDEX:
      return IrqInfo{index, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED, 1};
    case VFIO_PCI_MSI_IRQ_INDEX: return IrqInfo{index, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE, 0};
    case VFIO_PCI_MSIX_IRQ_INDEX: return IrqInfo{index, VFIO_IRQ_INFO_EVENTFD, pciemu::cfg::kMsixVectors};
    case VFIO_PCI_ERR_IRQ_INDEX:
    case VFIO_PCI_REQ_IRQ_INDEX: return IrqInfo{index, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE, 1};
    default: return fail_errno(EINVAL, "IRQ index {} does not exist (0..{})", index, VFIO_PCI_NUM_IRQS - 1);
  }
}

std::uint32_t EmulatedFunction::status_reg() const {
  return std::chrono::steady_clock::now() >= armed_at_ + timing_.ready_after ? pciemu::kStatusReady : 0u;
}

std::uint32_t EmulatedFunction::cxl_status(std::uint32_t stored) const {
  const auto now = std::chrono::steady_clock::now();
  std::uint32_t v = stored & ~(pciemu::kCxlMemInfoValid | pciemu::kCxlMemActive);
  if (now >= armed_at_ + timing_.ready_after) v |= pciemu::kCxlMemInfoValid;
  if (now >= armed_at_ + timing_.ready_after + timing_.active_after) v |= pciemu::kCxlMemActive;
  return v;
}

// The registers whose value is the GPU's state now rather than what was
// stored: R31's CXL DVSEC word in config space (offset in config space).
void EmulatedFunction::overlay_live_registers(std::uint64_t offset, std::uint8_t* buf, std::size_t count) const {
  if (!cxl_dvsec_) return;
  const std::uint64_t reg = *cxl_dvsec_ + pciemu::kCxlRange1SizeLow;
  const std::uint32_t v = cxl_status(config_.space().peek(reg, 4));
  for (std::uint64_t b = 0; b < 4; ++b)
    if (reg + b >= offset && reg + b < offset + count) buf[reg + b - offset] = static_cast<std::uint8_t>(v >> (8 * b));
}

// R17-style bounds on every region; config space through the register
// tables (any width, any offset), BAR0 as a register file with the live R20
// registers, the other BARs empty (reads all-ones, writes dropped).
Result<std::size_t> EmulatedFunction::access(RegionIndex index, std::uint64_t offset, std::uint8_t* buf,
                                             std::size_t len, bool is_write) {
  if (index.value() >= regions_.size())
    return fail_errno(EINVAL, "region {} does not exist (0..{})", index, regions_.size() - 1);
  const std::uint64_t size = regions_[index.value()].size;
  if (size == 0) return fail_errno(EINVAL, "region {} has size 0", index);
  if (offset >= size) return fail_errno(EINVAL, "offset {:#x} is at or past region {}'s size {:#x} (R17)", offset, index, size);
  const std::size_t count = static_cast<std::size_t>(std::min<std::uint64_t>(len, size - offset));
  if (count == 0) return std::size_t{0};
  std::lock_guard lock(mutex_);
  if (index == kConfigRegion) {
    for (std::size_t done = 0; done < count;) {
      const std::size_t n = std::min<std::size_t>(4, count - done);
      const std::size_t width = n == 3 ? 2 : n;
      if (is_write) {
        std::uint32_t v = 0;
        std::memcpy(&v, buf + done, width);
        if (auto ok = config_.write(offset + done, width, v); !ok) return fail(ok.error());
      } else {
        auto v = config_.read(offset + done, width);
        if (!v) return fail(v.error());
        std::memcpy(buf + done, &*v, width);
      }
      done += width;
    }
    if (!is_write) overlay_live_registers(offset, buf, count);
    return count;
  }
  if (index == kBar0Region && bar0_.data()) {
    // BAR0 registers: a plain register file, except the R20 status registers.
    if (is_write) {
      std::memcpy(bar0_.data() + offset, buf, count);
    } else {
      std::memcpy(buf, bar0_.data() + offset, count);
      for (std::uint64_t reg : {pciemu::kC2cLinkStatusReg, pciemu::kHbmTrainingStatusReg}) {
        const std::uint32_t v = status_reg();
        for (std::uint64_t b = 0; b < 4; ++b)
          if (reg + b >= offset && reg + b < offset + count)
            buf[reg + b - offset] = static_cast<std::uint8_t>(v >> (8 * b));
      }
    }
    return count;
  }
  // Another BAR of the function (GH200's real BAR2 and BAR4, Blackwell's
  // BAR2): nothing behind it in emulation; reads all-ones, writes dropped.
  if (is_write)
    dropped_ += count;
  else
    std::memset(buf, 0xFF, count);
  return count;
}

Result<std::size_t> EmulatedFunction::read(RegionIndex index, std::uint64_t offset, std::span<std::uint8_t> out) {
  return access(index, offset, out.data(), out.size(), false);
}

Result<std::size_t> EmulatedFunction::write(RegionIndex index, std::uint64_t offset, std::span<const std::uint8_t> in) {
  // The buffer is only read on the write path.
  return access(index, offset, const_cast<std::uint8_t*>(in.data()), in.size(), true);
}

// As VFIO_DEVICE_RESET on vfio-pci: the function is reset, but the PCI core
// saves its config state before and restores it after (pci_try_reset_function),
// so BARs, COMMAND and the rest read back as they were (R39: the kernel's
// driver keeps BAR0's value across a reset); only the device's own state -
// BAR0's registers and readiness - starts over.
Result<void> EmulatedFunction::reset() {
  std::lock_guard lock(mutex_);
  // Back to zero pages (the memfd's holes read zero).
  if (bar0_fd_ && ::fallocate(bar0_fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
                              static_cast<off_t>(bar0_.size())) != 0)
    return fail_errno(errno, "clearing BAR0's registers: {}", std::strerror(errno));
  armed_at_ = std::chrono::steady_clock::now();
  return {};
}

std::uint64_t EmulatedFunction::dropped_writes() const {
  std::lock_guard lock(mutex_);
  return dropped_;
}

// R41. The readiness clock is CLOCK_MONOTONIC (steady_clock), which is the
// system's, not the process's: the successor's "now" continues this one's.
Result<nlohmann::json> EmulatedFunction::save_state(sys::FdTable& fds) const {
  std::lock_guard lock(mutex_);
  nlohmann::json j{{"kind", "emulated"},
                   {"device_id", config_.params().device_id},
                   {"config", state::binary(config_.space().bytes())},
                   {"armed_at_ns", std::chrono::duration_cast<std::chrono::nanoseconds>(armed_at_.time_since_epoch()).count()},
                   {"dropped", dropped_}};
  if (bar0_fd_) {
    j["bar0_fd"] = fds.add(bar0_fd_.get());
    j["bar0_size"] = bar0_.size();
  }
  return j;
}

Result<void> EmulatedFunction::restore_state(const nlohmann::json& j, sys::FdTable& fds) {
  if (auto ok = state::expect_kind(j, "emulated"); !ok) return ok;
  auto id = state::u64(j, "device_id");
  auto config = state::bytes(j, "config");
  auto armed = state::i64(j, "armed_at_ns");
  auto dropped = state::u64(j, "dropped");
  if (!id || !config || !armed || !dropped)
    return fail(!id ? id.error() : !config ? config.error() : !armed ? armed.error() : dropped.error());
  if (*id != config_.params().device_id)
    return fail_errno(EINVAL, "hand-over state: device {:04x} was saved where this server emulates {:04x}", *id,
                      config_.params().device_id);
  std::lock_guard lock(mutex_);
  if (bar0_fd_) {
    auto index = state::u64(j, "bar0_fd");
    auto size = state::u64(j, "bar0_size");
    if (!index || !size) return fail(!index ? index.error() : size.error());
    if (*size != bar0_.size())
      return fail_errno(EINVAL, "hand-over state: BAR0 of {:#x} bytes saved, {:#x} here", *size, bar0_.size());
    auto fd = fds.take(*index);
    if (!fd) return fail(fd.error());
    struct stat st {};
    if (::fstat(fd->get(), &st) != 0 || static_cast<std::uint64_t>(st.st_size) != *size)
      return fail_errno(EINVAL, "hand-over state: BAR0's descriptor does not hold {:#x} bytes", *size);
    auto map = sys::Mapping::map(fd->get(), 0, *size, sys::huge_alignment(*size), PROT_READ | PROT_WRITE,
                                 MAP_SHARED | MAP_NORESERVE);
    if (!map) return fail(map.error().context("BAR0 register file"));
    bar0_fd_ = std::move(*fd);
    bar0_ = std::move(*map);
  }
  if (auto ok = config_.space().load(*config); !ok) return ok;
  armed_at_ = std::chrono::steady_clock::time_point(std::chrono::nanoseconds(*armed));
  dropped_ = *dropped;
  return {};
}

}  // namespace nvgrace::vfio::emulated
