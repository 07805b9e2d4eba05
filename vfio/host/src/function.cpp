#include "nvgrace/vfio/host/function.hpp"

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

Result<std::unique_ptr<HostFunction>> HostFunction::create(OpenedVfio vfio, std::string name) {
  if (!vfio.device || !vfio.iommu) return fail_errno(EINVAL, "{}: no VFIO device", name);
  std::unique_ptr<HostFunction> f(new HostFunction());
  f->name_ = std::move(name);
  f->vfio_ = std::move(vfio);
  auto& io = *f->vfio_.device;
  auto info = io.info();
  if (!info) return fail(info.error().context(f->name_));
  if (!(info->flags & VFIO_DEVICE_FLAGS_PCI) || info->num_regions <= VFIO_PCI_CONFIG_REGION_INDEX)
    return fail_errno(ENODEV, "{}: VFIO does not present it as a PCI device ({} regions)", f->name_, info->num_regions);
  f->info_ = *info;
  // The kernel's regions (R27): its info and capability chain as they are.
  for (unsigned i = 0; i < info->num_regions; ++i) {
    auto bytes = io.region_info(i);
    if (!bytes && bytes.error().err == EINVAL) {
      // vfio-pci refuses the info of a region the device lacks (VGA on a
      // device that is not one): kept as the kernel's answer (R39), asked
      // for again it is EINVAL again.
      f->regions_.push_back({{}, 0, 0, -1, EINVAL});
      continue;
    }
    if (!bytes) return fail(bytes.error().context(f->name_));
    auto dec = decode_region_info(*bytes);
    if (!dec) return fail(dec.error().context(fmt::format("{}: region {} info", f->name_, i)));
    const bool mappable = (dec->region.flags & VFIO_REGION_INFO_FLAG_MMAP) != 0;
    f->regions_.push_back({std::move(*bytes), dec->region.size, dec->offset, mappable ? io.fd() : -1});
  }
  return f;
}

Result<RegionInfoView> HostFunction::region_info(RegionIndex index) {
  if (index.value() >= regions_.size())
    return fail_errno(EINVAL, "region {} does not exist (0..{})", index, regions_.size() - 1);
  const auto& r = regions_[index.value()];
  if (r.refused) return fail_errno(r.refused, "region {}: the kernel refuses its info ({})", index, std::strerror(r.refused));
  return RegionInfoView{r.info, r.fd};
}

Result<IrqInfo> HostFunction::irq(unsigned index) const {
  if (index >= info_.num_irqs) return fail_errno(EINVAL, "IRQ index {} does not exist (0..{})", index, info_.num_irqs - 1);
  return vfio_.device->irq_info(index);
}

Result<std::size_t> HostFunction::read(RegionIndex index, std::uint64_t offset, std::span<std::uint8_t> out) {
  if (index.value() >= regions_.size())
    return fail_errno(EINVAL, "region {} does not exist (0..{})", index, regions_.size() - 1);
  const auto& r = regions_[index.value()];
  if (offset >= r.size) return fail_errno(EINVAL, "offset {:#x} is at or past region {}'s size {:#x}", offset, index, r.size);
  const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(out.size(), r.size - offset));
  return vfio_.device->pread(out.first(n), r.offset + offset);
}

Result<std::size_t> HostFunction::write(RegionIndex index, std::uint64_t offset, std::span<const std::uint8_t> in) {
  if (index.value() >= regions_.size())
    return fail_errno(EINVAL, "region {} does not exist (0..{})", index, regions_.size() - 1);
  const auto& r = regions_[index.value()];
  if (offset >= r.size) return fail_errno(EINVAL, "offset {:#x} is at or past region {}'s size {:#x}", offset, index, r.size);
  const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(in.size(), r.size - offset));
  return vfio_.device->pwrite(in.first(n), r.offset + offset);
}

// VFIO_DEVICE_RESET; a device that offers none says its state carried over.
Result<void> HostFunction::reset() {
  if (!(info_.flags & VFIO_DEVICE_FLAGS_RESET))
    return fail_errno(ENOTTY, "{}: the device offers no reset (VFIO_DEVICE_FLAGS_RESET clear): its state carries over",
                      name_);
  return vfio_.device->reset();
}

// R28: the client's memory, mapped into this process (the IOMMU pins pages
// of the caller's address space), then into the device's IOMMU.
Result<void> HostFunction::dma_map(const DmaMapping& m) {
  if (m.fd < 0)
    return fail_errno(EINVAL, "DMA map {:#x}+{:#x} without an fd: the IOMMU maps only memory nvgrace can map (R28)",
                      m.iova, m.size);
  if (dma_.contains(m.iova)) return fail_errno(EEXIST, "DMA map at {:#x} exists", m.iova);
  const int prot = PROT_READ | (m.writable ? PROT_WRITE : 0);
  auto memory = sys::Mapping::map(m.fd, m.offset, m.size, sys::huge_alignment(m.size), prot, MAP_SHARED);
  if (!memory) return fail(memory.error().context(fmt::format("mapping the client's memory for IOVA {:#x}", m.iova)));
  if (auto ok = vfio_.iommu->map(m.iova, m.size, memory->address(), m.readable, m.writable); !ok) return fail(ok.error());
  dma_.emplace(m.iova, DmaMap{m.size, std::move(*memory)});
  return {};
}

Result<void> HostFunction::dma_unmap(Iova iova, std::uint64_t size) {
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
Result<void> HostFunction::set_irqs(const IrqSet& s) {
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
