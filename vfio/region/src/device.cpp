#include "nvgrace/vfio/device.hpp"

#include <linux/vfio.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <thread>

#include <fmt/format.h>

#include "nvgrace/common/checked.hpp"
#include "nvgrace/pciemu/capabilities.hpp"
#include "nvgrace/vfio/region_info.hpp"

namespace nvgrace::vfio {

Result<std::unique_ptr<VariantDevice>> VariantDevice::create(pciemu::DeviceConfig config, pciemu::Layout layout,
                                                             std::unique_ptr<MemoryBackend> backend,
                                                             ReadinessOptions readiness) {
  if (layout.passthrough || !layout.usemem) return fail_errno(EINVAL, "the device has no fake BARs (R5)");
  if (!backend) return fail_errno(EINVAL, "no memory backend");
  for (const auto* m : {&layout.usemem, &layout.resmem}) {
    if (!*m) continue;
    auto r = backend->range((*m)->role);
    if (!r || r->size != (*m)->length)
      return fail_errno(EINVAL, "backend {} does not hold {} ({:#x} bytes)", backend->kind(), to_string((*m)->role),
                        (*m)->length);
    const auto bar = config.bar((*m)->bar_index);
    if (!bar || bar->size != (*m)->bar_size)
      return fail_errno(EINVAL, "config space BAR{} does not match the layout's {} BAR", (*m)->bar_index,
                        to_string((*m)->role));
  }
  auto regions = region_table(config.params().bars, pciemu::ConfigSpace::kSize);
  std::unique_ptr<VariantDevice> d(new VariantDevice(std::move(config)));
  d->regions_ = std::move(regions);
  if (auto bar0 = d->config_.bar(0)) {
    auto map = Mapping::map(-1, 0, bar0->size, huge_alignment(bar0->size), PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_NORESERVE);
    if (!map) return fail(map.error().context("BAR0 register file"));
    d->bar0_ = std::move(*map);
  }
  d->config_.reset();  // R14: fake BARs zero when the device is opened
  d->layout_ = std::move(layout);
  d->backend_ = std::move(backend);
  // Region info as a vfio-user client gets it: for BAR2/BAR4 the region
  // offset is the memory's offset in the backing fd sent with it.
  for (const auto& r : d->regions_) {
    std::optional<std::uint64_t> fd_offset;
    if (const auto* m = d->mem_region(r.index)) fd_offset = d->backend_->range(m->role)->fd_offset;
    d->region_info_.push_back(encode_region_info(r, region_info_size(r), fd_offset));
  }
  d->dma_limits_.pgsizes = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  d->readiness_ = readiness;
  d->cxl_dvsec_ = pciemu::find_dvsec(d->config_.space().bytes(), pciemu::kCxlVendorId, pciemu::kCxlDeviceDvsecId).offset;
  d->armed_at_ = std::chrono::steady_clock::now();
  return d;
}

DeviceInfo VariantDevice::info() const {
  return {VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET, VFIO_PCI_NUM_REGIONS, VFIO_PCI_NUM_IRQS};
}

Result<RegionDesc> VariantDevice::region(unsigned index) const {
  if (index >= regions_.size()) return fail_errno(EINVAL, "region {} does not exist (0..{})", index, regions_.size() - 1);
  return regions_[index];
}

Result<RegionInfoView> VariantDevice::region_info(unsigned index) {
  if (index >= region_info_.size())
    return fail_errno(EINVAL, "region {} does not exist (0..{})", index, region_info_.size() - 1);
  const auto* m = mem_region(index);
  if (!m) return RegionInfoView{region_info_[index], -1};
  std::shared_lock reset_guard(reset_mutex_);
  if (auto ok = wait_ready(); !ok) return fail(ok.error());
  return RegionInfoView{region_info_[index], backend_->range(m->role)->fd};
}

Result<IrqInfo> VariantDevice::irq(unsigned index) const {
  switch (index) {
    case VFIO_PCI_INTX_IRQ_INDEX:
      return IrqInfo{index, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED, 1};
    case VFIO_PCI_MSI_IRQ_INDEX: return IrqInfo{index, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE, 0};
    case VFIO_PCI_MSIX_IRQ_INDEX: return IrqInfo{index, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE, pciemu::cfg::kMsixVectors};
    case VFIO_PCI_ERR_IRQ_INDEX:
    case VFIO_PCI_REQ_IRQ_INDEX: return IrqInfo{index, VFIO_IRQ_INFO_EVENTFD, 1};
    default: return fail_errno(EINVAL, "IRQ index {} does not exist (0..{})", index, VFIO_PCI_NUM_IRQS - 1);
  }
}

const pciemu::MemRegion* VariantDevice::mem_region(unsigned index) const {
  for (const auto* m : {&layout_.usemem, &layout_.resmem})
    if (*m && (*m)->bar_index == index) return &**m;
  return nullptr;
}

std::uint32_t VariantDevice::status_reg() const {
  return std::chrono::steady_clock::now() >= armed_at_ + readiness_.ready_after ? kStatusReady : 0u;
}

std::uint32_t VariantDevice::cxl_status(std::uint32_t stored) const {
  const auto now = std::chrono::steady_clock::now();
  std::uint32_t v = stored & ~(pciemu::kCxlMemInfoValid | pciemu::kCxlMemActive);
  if (now >= armed_at_ + readiness_.ready_after) v |= pciemu::kCxlMemInfoValid;
  if (now >= armed_at_ + readiness_.ready_after + readiness_.active_after) v |= pciemu::kCxlMemActive;
  return v;
}

// The registers whose value is the GPU's state now rather than what was
// stored: R31's CXL DVSEC word in config space (offset in config space).
void VariantDevice::overlay_live_registers(std::uint64_t offset, std::uint8_t* buf, std::size_t count) const {
  if (!cxl_dvsec_) return;
  const std::uint64_t reg = *cxl_dvsec_ + pciemu::kCxlRange1SizeLow;
  const std::uint32_t v = cxl_status(config_.space().peek(reg, 4));
  for (std::uint64_t b = 0; b < 4; ++b)
    if (reg + b >= offset && reg + b < offset + count) buf[reg + b - offset] = static_cast<std::uint8_t>(v >> (8 * b));
}

Result<void> VariantDevice::wait_ready() {
  if (ready_.load(std::memory_order_acquire)) return {};
  std::lock_guard lock(ready_mutex_);
  if (ready_.load(std::memory_order_acquire)) return {};
  Result<void> ok;
  if (cxl_dvsec_) {
    // R31: the CXL Device DVSEC decides.
    ok = wait_cxl_ready(
        [&](std::uint64_t off) -> Result<std::uint32_t> {
          std::lock_guard cfg(config_mutex_);
          return cxl_status(config_.space().peek(off, 4));
        },
        *cxl_dvsec_, readiness_);
  } else {
    ok = wait_bar0_ready([&](std::uint64_t) -> Result<std::uint32_t> { return status_reg(); }, readiness_);
  }
  if (ok) ready_.store(true, std::memory_order_release);
  return ok;
}

Result<std::size_t> VariantDevice::access(unsigned index, std::uint64_t offset, std::uint8_t* buf, std::size_t len,
                                          bool is_write) {
  std::shared_lock reset_guard(reset_mutex_);
  // By reference: this is the hot path of every region access.
  if (index >= regions_.size()) return fail_errno(EINVAL, "region {} does not exist (0..{})", index, regions_.size() - 1);
  const std::uint64_t size = regions_[index].size;
  if (size == 0) return fail_errno(EINVAL, "region {} has size 0", index);
  if (offset >= size)
    return fail_errno(EINVAL, "offset {:#x} is at or past region {}'s size {:#x} (R17)", offset, index, size);
  const std::size_t count = static_cast<std::size_t>(std::min<std::uint64_t>(len, size - offset));
  if (count == 0) return std::size_t{0};

  if (index == VFIO_PCI_CONFIG_REGION_INDEX) {
    std::lock_guard lock(config_mutex_);
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

  if (const auto* m = mem_region(index)) {
    if (auto ok = wait_ready(); !ok) return fail(ok.error());
    const auto range = backend_->range(m->role);
    const std::size_t backed = offset < m->length ? static_cast<std::size_t>(std::min<std::uint64_t>(count, m->length - offset)) : 0;
    if (is_write) {
      std::memcpy(range->data + offset, buf, backed);
      if (count > backed) dropped_.fetch_add(count - backed, std::memory_order_relaxed);
    } else {
      std::memcpy(buf, range->data + offset, backed);
      std::memset(buf + backed, 0xFF, count - backed);  // R17: the unbacked tail reads all-ones
    }
    return count;
  }

  if (index == VFIO_PCI_BAR0_REGION_INDEX && bar0_.data()) {
    // BAR0 registers: a plain register file, except the R20 status registers.
    std::lock_guard lock(config_mutex_);
    if (is_write) {
      std::memcpy(bar0_.data() + offset, buf, count);
    } else {
      std::memcpy(buf, bar0_.data() + offset, count);
      for (std::uint64_t reg : {kC2cLinkStatusReg, kHbmTrainingStatusReg}) {
        const std::uint32_t v = status_reg();
        for (std::uint64_t b = 0; b < 4; ++b)
          if (reg + b >= offset && reg + b < offset + count)
            buf[reg + b - offset] = static_cast<std::uint8_t>(v >> (8 * b));
      }
    }
    return count;
  }

  // Another BAR of the device's own (a Blackwell BAR2): nothing behind it in
  // emulation; reads all-ones, writes dropped.
  if (is_write)
    dropped_.fetch_add(count, std::memory_order_relaxed);
  else
    std::memset(buf, 0xFF, count);
  return count;
}

Result<std::size_t> VariantDevice::read(unsigned index, std::uint64_t offset, std::span<std::uint8_t> out) {
  return access(index, offset, out.data(), out.size(), false);
}

Result<std::size_t> VariantDevice::write(unsigned index, std::uint64_t offset, std::span<const std::uint8_t> in) {
  // The buffer is only read on the write path.
  return access(index, offset, const_cast<std::uint8_t*>(in.data()), in.size(), true);
}

Result<MmapArea> VariantDevice::mmap(unsigned index, std::uint64_t offset, std::uint64_t length) {
  std::shared_lock reset_guard(reset_mutex_);
  const auto* m = mem_region(index);
  if (!m) return fail_errno(EINVAL, "region {} has no mmap-able memory (R16)", index);
  auto end = checked_add(offset, length);
  if (length == 0 || !end || *end > m->length)
    return fail_errno(EINVAL, "mmap of [{:#x}, +{:#x}) reaches past {}'s {:#x} bytes of memory (R18)", offset, length,
                      to_string(m->role), m->length);
  if (auto ok = wait_ready(); !ok) return fail(ok.error());
  const auto range = backend_->range(m->role);
  return MmapArea{range->fd, range->fd_offset + offset, length, range->cache};
}

Result<void> VariantDevice::reset() {
  std::unique_lock reset_guard(reset_mutex_);
  std::lock_guard lock(config_mutex_);
  config_.reset();
  if (bar0_.data()) {
    // Back to zero pages: drop the written registers.
    ::madvise(bar0_.data(), bar0_.size(), MADV_DONTNEED);
  }
  armed_at_ = std::chrono::steady_clock::now();
  ready_.store(false, std::memory_order_release);
  return {};
}

pciemu::BarStates VariantDevice::bar_states() const {
  std::lock_guard lock(config_mutex_);
  return config_.bars();
}

VariantDevice::DecodeState VariantDevice::decode_state() const {
  std::lock_guard lock(config_mutex_);
  return {config_.memory_decode(), config_.bars()};
}

bool VariantDevice::memory_decode() const {
  std::lock_guard lock(config_mutex_);
  return config_.memory_decode();
}

}  // namespace nvgrace::vfio
