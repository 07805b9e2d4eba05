#include "nvgrace/vfio/host/host_device.hpp"

#include <linux/pci_regs.h>
#include <linux/vfio.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "nvgrace/common/checked.hpp"
#include "nvgrace/pciemu/capabilities.hpp"
#include "nvgrace/vfio/region_info.hpp"
#include "nvgrace/vfio/wire.hpp"

namespace nvgrace::vfio::host {
namespace {

std::string flag_names(std::uint32_t f) {
  std::string s;
  if (f & VFIO_REGION_INFO_FLAG_READ) s += "read,";
  if (f & VFIO_REGION_INFO_FLAG_WRITE) s += "write,";
  if (f & VFIO_REGION_INFO_FLAG_MMAP) s += "mmap,";
  if (!s.empty()) s.pop_back();
  return s.empty() ? "none" : s;
}

// A 64-bit BAR at `index` - 1 whose upper half is `index`: the fake BAR at
// `index` would cut it in two.
bool upper_half_of_64bit_bar(std::span<const std::uint8_t> cfg, unsigned index) {
  if (index == 0) return false;
  const std::size_t lo = PCI_BASE_ADDRESS_0 + 4 * (index - 1);
  if (lo >= cfg.size()) return false;
  const std::uint8_t v = cfg[lo];
  return !(v & PCI_BASE_ADDRESS_SPACE_IO) && (v & PCI_BASE_ADDRESS_MEM_TYPE_MASK) == PCI_BASE_ADDRESS_MEM_TYPE_64;
}

}  // namespace

std::vector<std::string> compare_regions(const std::vector<RegionDesc>& model,
                                         const std::vector<DecodedRegionInfo>& host) {
  std::vector<std::string> out;
  for (const auto& m : model) {
    const auto it = std::find_if(host.begin(), host.end(), [&](const auto& h) { return h.region.index == m.index; });
    if (it == host.end()) {
      out.push_back(fmt::format("region {}: missing on the host", m.index));
      continue;
    }
    const auto& h = it->region;
    if (h.size != m.size)
      out.push_back(fmt::format("region {}: size {:#x} in the model, {:#x} on the host", m.index, m.size, h.size));
    const auto mflags = m.flags & (VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE | VFIO_REGION_INFO_FLAG_MMAP);
    const auto hflags = h.flags & (VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE | VFIO_REGION_INFO_FLAG_MMAP);
    if (mflags != hflags)
      out.push_back(fmt::format("region {}: flags {} in the model, {} on the host", m.index, flag_names(mflags),
                                flag_names(hflags)));
    if (m.sparse.size() != h.sparse.size()) {
      out.push_back(fmt::format("region {}: {} sparse-mmap area(s) in the model, {} on the host", m.index,
                                m.sparse.size(), h.sparse.size()));
    } else {
      for (std::size_t i = 0; i < m.sparse.size(); ++i)
        if (m.sparse[i].offset != h.sparse[i].offset || m.sparse[i].size != h.sparse[i].size)
          out.push_back(fmt::format("region {}: sparse area {} is [{:#x}, +{:#x}) in the model, [{:#x}, +{:#x}) on "
                                    "the host",
                                    m.index, i, m.sparse[i].offset, m.sparse[i].size, h.sparse[i].offset,
                                    h.sparse[i].size));
    }
  }
  return out;
}

Result<std::unique_ptr<HostDevice>> HostDevice::create(OpenedVfio vfio, HostDeviceOptions opts) {
  if (!vfio.device || !vfio.iommu) return fail_errno(EINVAL, "{}: no VFIO device", opts.name);
  std::unique_ptr<HostDevice> d(new HostDevice());
  d->name_ = opts.name;
  d->vfio_ = std::move(vfio);
  auto& io = *d->vfio_.device;
  auto info = io.info();
  if (!info) return fail(info.error().context(d->name_));
  if (!(info->flags & VFIO_DEVICE_FLAGS_PCI) || info->num_regions <= VFIO_PCI_CONFIG_REGION_INDEX)
    return fail_errno(ENODEV, "{}: VFIO does not present it as a PCI device ({} regions)", d->name_, info->num_regions);
  d->info_ = *info;

  // The kernel's regions (R27): its info and capability chain as they are.
  for (unsigned i = 0; i < info->num_regions; ++i) {
    auto bytes = io.region_info(i);
    if (!bytes && bytes.error().err == EINVAL) {
      // vfio-pci refuses the info of a region the device lacks (VGA on a
      // device that is not one): present it as VFIO does an absent BAR.
      const RegionDesc absent{i, 0, 0, {}, false};
      bytes = encode_region_info(absent, region_info_size(absent), region_offset(i));
    }
    if (!bytes) return fail(bytes.error().context(d->name_));
    auto dec = decode_region_info(*bytes);
    if (!dec) return fail(dec.error().context(fmt::format("{}: region {} info", d->name_, i)));
    const bool mappable = (dec->region.flags & VFIO_REGION_INFO_FLAG_MMAP) != 0;
    d->regions_.push_back({std::move(*bytes), dec->region.size, dec->offset, mappable ? io.fd() : -1, nullptr});
  }
  const auto& cfg_region = d->regions_[VFIO_PCI_CONFIG_REGION_INDEX];
  d->config_offset_ = cfg_region.offset;
  d->config_size_ = cfg_region.size;
  std::vector<std::uint8_t> cfg(static_cast<std::size_t>(std::min<std::uint64_t>(d->config_size_, PCI_CFG_SPACE_EXP_SIZE)));
  if (auto n = io.pread(cfg, d->config_offset_); !n) return fail(n.error().context(d->name_ + ": reading config space"));
  d->cxl_dvsec_ = pciemu::find_dvsec(cfg, pciemu::kCxlVendorId, pciemu::kCxlDeviceDvsecId).offset;
  d->readiness_ = opts.readiness;
  d->ready_opts_ = opts.ready;

  if (opts.layout && !opts.layout->passthrough) {
    if (!opts.backend) return fail_errno(EINVAL, "{}: fake BARs need a memory backend", d->name_);
    d->layout_ = std::move(opts.layout);
    d->backend_ = std::move(opts.backend);
    std::vector<pciemu::GuestBar> fake;
    for (const auto* m : {&d->layout_->usemem, &d->layout_->resmem})
      if (*m)
        fake.push_back({(*m)->bar_index, (*m)->role == pciemu::MemRole::usemem ? pciemu::BarRole::usemem
                                                                                 : pciemu::BarRole::resmem,
                        (*m)->bar_size, **m});
    // R27: the device's own MSI-X table and PBA must stay reachable, and no
    // 64-bit BAR of its own may straddle a fake one.
    const auto msix = pciemu::find_msix(cfg);
    for (const auto& b : fake) {
      if (msix && (msix->table_bar == b.index || msix->table_bar == b.index + 1))
        return fail_errno(EINVAL, "{}: its MSI-X table is in BAR{}, which the fake {} BAR replaces (R27)", d->name_,
                          msix->table_bar, pciemu::to_string(b.role));
      if (msix && (msix->pba_bar == b.index || msix->pba_bar == b.index + 1))
        return fail_errno(EINVAL, "{}: its MSI-X PBA is in BAR{}, which the fake {} BAR replaces (R27)", d->name_,
                          msix->pba_bar, pciemu::to_string(b.role));
      if (upper_half_of_64bit_bar(cfg, b.index))
        return fail_errno(EINVAL, "{}: BAR{} is a 64-bit BAR whose upper half is BAR{}, where the fake {} BAR goes (R11)",
                          d->name_, b.index - 1, b.index, pciemu::to_string(b.role));
    }
    pciemu::DeviceConfigParams params;
    params.device_id = opts.device_id;
    params.bars = fake;
    auto overlay = pciemu::DeviceConfig::build(params);
    if (!overlay) return fail(overlay.error().context(d->name_));
    d->overlay_ = std::move(*overlay);
    // R16: the fake BARs replace the kernel's regions 2/4 (and their upper halves).
    for (const auto& b : fake) {
      const auto* m = &*b.mem;
      for (const auto* lm : {&d->layout_->usemem, &d->layout_->resmem})
        if (*lm && (*lm)->bar_index == b.index) m = &**lm;
      const auto range = d->backend_->range(m->role);
      if (!range) return fail_errno(EINVAL, "{}: the backend does not hold {}", d->name_, pciemu::to_string(m->role));
      RegionDesc desc{b.index, b.size,
                      VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE | VFIO_REGION_INFO_FLAG_MMAP,
                      {{0, m->length}}, !m->cacheable};
      if (!opts.mmap_fake_bars) {
        desc.flags &= ~static_cast<std::uint32_t>(VFIO_REGION_INFO_FLAG_MMAP);
        desc.sparse.clear();
      }
      d->regions_[b.index] = {encode_region_info(desc, region_info_size(desc), range->fd_offset), b.size,
                              range->fd_offset, opts.mmap_fake_bars ? range->fd : -1, m};
      const RegionDesc upper{b.index + 1, 0, 0, {}, false};
      d->regions_[b.index + 1] = {encode_region_info(upper, region_info_size(upper)), 0, 0, -1, nullptr};
    }
  }
  return d;
}

bool HostDevice::model_owns(std::uint64_t off) const {
  if (!layout_) return false;
  for (const auto* m : {&layout_->usemem, &layout_->resmem})
    if (*m) {
      const std::uint64_t lo = PCI_BASE_ADDRESS_0 + 4 * (*m)->bar_index;
      if (off >= lo && off < lo + 8) return true;
    }
  return false;
}

std::string HostDevice::readiness_rule() const {
  if (readiness_ == ReadinessCheck::skip) return "skipped";
  if (cxl_dvsec_) return fmt::format("R31 (CXL Device DVSEC at {:#x})", *cxl_dvsec_);
  return "R20 (BAR0 registers 0x1498 and 0x200bc)";
}

Result<RegionInfoView> HostDevice::region_info(unsigned index) {
  if (index >= regions_.size()) return fail_errno(EINVAL, "region {} does not exist (0..{})", index, regions_.size() - 1);
  const auto& r = regions_[index];
  if (r.mem)
    if (auto ok = wait_ready(); !ok) return fail(ok.error());
  return RegionInfoView{r.info, r.fd};
}

Result<IrqInfo> HostDevice::irq(unsigned index) const {
  if (index >= info_.num_irqs) return fail_errno(EINVAL, "IRQ index {} does not exist (0..{})", index, info_.num_irqs - 1);
  return vfio_.device->irq_info(index);
}

Result<std::size_t> HostDevice::read(unsigned index, std::uint64_t offset, std::span<std::uint8_t> out) {
  if (index >= regions_.size()) return fail_errno(EINVAL, "region {} does not exist (0..{})", index, regions_.size() - 1);
  if (index == VFIO_PCI_CONFIG_REGION_INDEX) return config_access(offset, out.data(), out.size(), false);
  const auto& r = regions_[index];
  if (r.mem) return memory_access(r, offset, out.data(), out.size(), false);
  if (offset >= r.size) return fail_errno(EINVAL, "offset {:#x} is at or past region {}'s size {:#x}", offset, index, r.size);
  const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(out.size(), r.size - offset));
  return vfio_.device->pread(out.first(n), r.offset + offset);
}

Result<std::size_t> HostDevice::write(unsigned index, std::uint64_t offset, std::span<const std::uint8_t> in) {
  if (index >= regions_.size()) return fail_errno(EINVAL, "region {} does not exist (0..{})", index, regions_.size() - 1);
  if (index == VFIO_PCI_CONFIG_REGION_INDEX)
    return config_access(offset, const_cast<std::uint8_t*>(in.data()), in.size(), true);
  const auto& r = regions_[index];
  if (r.mem) return memory_access(r, offset, const_cast<std::uint8_t*>(in.data()), in.size(), true);
  if (offset >= r.size) return fail_errno(EINVAL, "offset {:#x} is at or past region {}'s size {:#x}", offset, index, r.size);
  const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(in.size(), r.size - offset));
  return vfio_.device->pwrite(in.first(n), r.offset + offset);
}

// R26: config space is the kernel's, byte by byte, except the fake BARs'
// registers, which the model owns (R11-R13): reads take those bytes from the
// model, writes store them there and send only the rest to the device.
Result<std::size_t> HostDevice::config_access(std::uint64_t offset, std::uint8_t* buf, std::size_t len, bool is_write) {
  if (offset >= config_size_)
    return fail_errno(EINVAL, "config offset {:#x} is at or past the {:#x}-byte config space", offset, config_size_);
  const auto count = static_cast<std::size_t>(std::min<std::uint64_t>(len, config_size_ - offset));
  auto& io = *vfio_.device;
  if (!is_write) {
    auto n = io.pread(std::span(buf, count), config_offset_ + offset);
    if (!n) return fail(n.error());
    for (std::size_t i = 0; i < *n; ++i)
      if (model_owns(offset + i)) buf[i] = static_cast<std::uint8_t>(overlay_->space().peek(offset + i, 1));
    return *n;
  }
  for (std::size_t i = 0; i < count;) {
    if (model_owns(offset + i)) {
      if (auto ok = overlay_->write(offset + i, 1, buf[i]); !ok) return fail(ok.error());
      ++i;
      continue;
    }
    std::size_t run = 1;
    while (i + run < count && !model_owns(offset + i + run)) ++run;
    auto n = io.pwrite(std::span(buf + i, run), config_offset_ + offset + i);
    if (!n) return fail(n.error());
    if (*n != run) return i + *n;
    i += run;
  }
  return count;
}

// R17 over the fake BARs' memory, as the emulated device does it.
Result<std::size_t> HostDevice::memory_access(const Region& r, std::uint64_t offset, std::uint8_t* buf, std::size_t len,
                                              bool is_write) {
  if (offset >= r.size)
    return fail_errno(EINVAL, "offset {:#x} is at or past region {}'s size {:#x} (R17)", offset, r.mem->bar_index, r.size);
  if (auto ok = wait_ready(); !ok) return fail(ok.error());
  const auto count = static_cast<std::size_t>(std::min<std::uint64_t>(len, r.size - offset));
  const auto range = backend_->range(r.mem->role);
  const std::size_t backed =
      offset < r.mem->length ? static_cast<std::size_t>(std::min<std::uint64_t>(count, r.mem->length - offset)) : 0;
  if (is_write) {
    std::memcpy(range->data + offset, buf, backed);
    dropped_ += count - backed;
  } else {
    std::memcpy(buf, range->data + offset, backed);
    std::memset(buf + backed, 0xFF, count - backed);  // R17: the unbacked tail reads all-ones
  }
  return count;
}

// R20 / R31 on the real device. The BAR0 registers are read through VFIO,
// with memory decode turned on for the read (a BAR access with decode off
// fails) and restored after.
Result<void> HostDevice::wait_ready() {
  if (ready_ || readiness_ == ReadinessCheck::skip || !layout_) {
    ready_ = true;
    return {};
  }
  auto& io = *vfio_.device;
  auto cfg_read = [&](std::uint64_t off) -> Result<std::uint32_t> {
    std::uint32_t v = 0;
    auto n = io.pread(std::span(reinterpret_cast<std::uint8_t*>(&v), 4), config_offset_ + off);
    if (!n) return fail(n.error());
    return v;
  };
  Result<void> ok;
  if (cxl_dvsec_) {
    ok = wait_cxl_ready(cfg_read, *cxl_dvsec_, ready_opts_);
  } else {
    const auto& bar0 = regions_[VFIO_PCI_BAR0_REGION_INDEX];
    if (bar0.size < kHbmTrainingStatusReg + 4)
      return fail_errno(ENODEV, "{}: BAR0 ({:#x} bytes) has no readiness registers at {:#x}/{:#x} (R20)", name_,
                        bar0.size, kC2cLinkStatusReg, kHbmTrainingStatusReg);
    std::uint16_t cmd = 0;
    if (auto n = io.pread(std::span(reinterpret_cast<std::uint8_t*>(&cmd), 2), config_offset_ + PCI_COMMAND); !n)
      return fail(n.error());
    const std::uint16_t on = cmd | PCI_COMMAND_MEMORY;
    if (on != cmd) (void)io.pwrite(std::span(reinterpret_cast<const std::uint8_t*>(&on), 2), config_offset_ + PCI_COMMAND);
    ok = wait_bar0_ready(
        [&](std::uint64_t off) -> Result<std::uint32_t> {
          std::uint32_t v = 0;
          auto n = io.pread(std::span(reinterpret_cast<std::uint8_t*>(&v), 4), bar0.offset + off);
          if (!n) return fail(n.error());
          return v;
        },
        ready_opts_);
    if (on != cmd) (void)io.pwrite(std::span(reinterpret_cast<const std::uint8_t*>(&cmd), 2), config_offset_ + PCI_COMMAND);
  }
  if (!ok) return fail(ok.error().context(name_));
  ready_ = true;
  return {};
}

// VFIO_DEVICE_RESET, the fake BARs back to zero (R14), then the readiness
// wait (R20/R31). A device that offers no reset still gets its fake BARs
// zeroed; the error says its own state carried over.
Result<void> HostDevice::reset() {
  Result<void> hw;
  if (info_.flags & VFIO_DEVICE_FLAGS_RESET)
    hw = vfio_.device->reset();
  else
    hw = fail_errno(ENOTTY, "{}: the device offers no reset (VFIO_DEVICE_FLAGS_RESET clear): its state carries over",
                    name_);
  if (overlay_) overlay_->reset();
  ready_ = false;
  if (!hw) return hw;
  return wait_ready();
}

// R28: the client's memory, mapped into this process (the IOMMU pins pages
// of the caller's address space), then into the device's IOMMU.
Result<void> HostDevice::dma_map(const DmaMapping& m) {
  if (m.fd < 0)
    return fail_errno(EINVAL, "DMA map {:#x}+{:#x} without an fd: the IOMMU maps only memory nvgrace can map (R28)",
                      m.iova, m.size);
  if (dma_.contains(m.iova)) return fail_errno(EEXIST, "DMA map at {:#x} exists", m.iova);
  const int prot = PROT_READ | (m.writable ? PROT_WRITE : 0);
  auto memory = Mapping::map(m.fd, m.offset, m.size, huge_alignment(m.size), prot, MAP_SHARED);
  if (!memory) return fail(memory.error().context(fmt::format("mapping the client's memory for IOVA {:#x}", m.iova)));
  if (auto ok = vfio_.iommu->map(m.iova, m.size, memory->data(), m.readable, m.writable); !ok) return fail(ok.error());
  dma_.emplace(m.iova, DmaMap{m.size, std::move(*memory)});
  return {};
}

Result<void> HostDevice::dma_unmap(std::uint64_t iova, std::uint64_t size) {
  const auto it = dma_.find(iova);
  if (it == dma_.end() || it->second.size != size)
    return fail_errno(ENOENT, "no DMA mapping is exactly {:#x}+{:#x}", iova, size);
  if (auto ok = vfio_.iommu->unmap(iova, size); !ok) return fail(ok.error());
  dma_.erase(it);  // unmaps the client's memory from this process too
  return {};
}

// R29: the eventfds straight into VFIO_DEVICE_SET_IRQS; nvgrace is never on
// the interrupt path. A de-assign (DATA_EVENTFD without fds) passes -1 for
// each interrupt, as VFIO takes it.
Result<void> HostDevice::set_irqs(const IrqSet& s) {
  std::vector<std::uint8_t> buf(sizeof(vfio_irq_set));
  if (s.flags & VFIO_IRQ_SET_DATA_BOOL) {
    buf.insert(buf.end(), s.bools.begin(), s.bools.end());
  } else if (s.flags & VFIO_IRQ_SET_DATA_EVENTFD) {
    for (std::uint32_t i = 0; i < s.count; ++i) {
      const std::int32_t fd = s.fds.empty() ? -1 : s.fds[i];
      wire::append(buf, fd);
    }
  }
  vfio_irq_set head{};
  head.argsz = static_cast<std::uint32_t>(buf.size());
  head.flags = s.flags;
  head.index = s.index;
  head.start = s.start;
  head.count = s.count;
  std::memcpy(buf.data(), &head, sizeof head);
  return vfio_.device->set_irqs(buf);
}

}  // namespace nvgrace::vfio::host
