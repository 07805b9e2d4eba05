#include "nvgrace/vfio/host/function.hpp"

#include <linux/pci_regs.h>
#include <linux/vfio.h>
#include <fcntl.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "nvgrace/common/checked.hpp"
#include "nvgrace/pciemu/capabilities.hpp"
#include "nvgrace/vfio/region_info.hpp"
#include "nvgrace/vfio/state.hpp"
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
  f->limits_ = f->vfio_.iommu->limits();
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
  sys::UniqueFd fd(::fcntl(m.fd, F_DUPFD_CLOEXEC, 0));
  if (!fd) return fail_errno(errno, "keeping the client's fd for IOVA {:#x}: {}", m.iova, std::strerror(errno));
  if (auto ok = vfio_.iommu->map(m.iova, m.size, memory->address(), m.readable, m.writable); !ok) return fail(ok.error());
  dma_.emplace(m.iova, DmaMap{m.size, std::move(*memory), std::move(fd), m.offset, m.readable, m.writable});
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

// R41. The document names the device by its BDF (the successor finds it by
// that before it builds anything) and lists each descriptor by its index.
Result<nlohmann::json> HostFunction::save_state(sys::FdTable& fds) const {
  nlohmann::json iommu = nlohmann::json::array();
  for (int fd : vfio_.iommu->descriptors()) iommu.push_back(fds.add(fd));
  nlohmann::json dma = nlohmann::json::array();
  for (const auto& [iova, m] : dma_)
    dma.push_back({{"iova", iova.value()}, {"size", m.size}, {"fd", fds.add(m.fd.get())}, {"offset", m.offset},
                   {"readable", m.readable}, {"writable", m.writable}});
  return nlohmann::json{{"kind", "vfio-host"},
                        {"bdf", name_},
                        {"api", std::string(vfio_.iommu->api())},
                        {"device_fd", fds.add(vfio_.device->fd())},
                        {"iommu_fds", std::move(iommu)},
                        {"ioas", vfio_.iommu->ioas()},
                        {"max_maps", limits_.max_maps},
                        {"dma", std::move(dma)}};
}

// The device and the IOMMU were adopted (adopt_saved_vfio) when this
// function was built; what is left is the client's memory behind each
// mapping, mapped here again.
Result<void> HostFunction::restore_state(const nlohmann::json& j, sys::FdTable& fds) {
  if (auto ok = state::expect_kind(j, "vfio-host"); !ok) return ok;
  auto bdf = state::text(j, "bdf");
  auto dma = state::array(j, "dma");
  auto max_maps = state::u64(j, "max_maps");
  if (!bdf || !dma || !max_maps) return fail(!bdf ? bdf.error() : !dma ? dma.error() : max_maps.error());
  if (*bdf != name_) return fail_errno(EINVAL, "hand-over state: device {} saved, this one is {}", *bdf, name_);
  std::map<Iova, DmaMap> table;
  for (const auto& e : **dma) {
    auto iova = state::u64(e, "iova"), size = state::u64(e, "size"), fd = state::u64(e, "fd"),
         offset = state::u64(e, "offset");
    auto r = state::boolean(e, "readable"), w = state::boolean(e, "writable");
    for (const Error* err : {iova ? nullptr : &iova.error(), size ? nullptr : &size.error(),
                             fd ? nullptr : &fd.error(), offset ? nullptr : &offset.error(),
                             r ? nullptr : &r.error(), w ? nullptr : &w.error()})
      if (err) return fail(*err);
    auto owned = fds.take(*fd);
    if (!owned) return fail(owned.error());
    const int prot = PROT_READ | (*w ? PROT_WRITE : 0);
    auto memory = sys::Mapping::map(owned->get(), *offset, *size, sys::huge_alignment(*size), prot, MAP_SHARED);
    if (!memory)
      return fail(memory.error().context(fmt::format("mapping the client's memory for IOVA {:#x} again", *iova)));
    table.emplace(Iova{*iova}, DmaMap{*size, std::move(*memory), std::move(*owned), *offset, *r, *w});
  }
  dma_ = std::move(table);
  // The limit the client was told: the adopted container's DMA_AVAIL now
  // counts the mappings already there as used.
  limits_.max_maps = static_cast<std::uint32_t>(std::min<std::uint64_t>(*max_maps, UINT32_MAX));
  return {};
}

// The IOMMU made what the record says: mappings the record lacks removed
// (every gap between the recorded ones, over the usable IOVA ranges), then
// every recorded one claimed - kept, or made again where it is gone.
Result<void> HostFunction::claim_state() {
  auto gap = [&](std::uint64_t first, std::uint64_t last) -> Result<void> {
    if (first == 0 && last == UINT64_MAX) {  // a size the ioctls cannot say: two halves
      if (auto ok = vfio_.iommu->unmap_within(Iova{0}, Iova{UINT64_MAX / 2}); !ok) return ok;
      return vfio_.iommu->unmap_within(Iova{UINT64_MAX / 2 + 1}, Iova{UINT64_MAX});
    }
    return vfio_.iommu->unmap_within(Iova{first}, Iova{last});
  };
  std::vector<IovaRange> usable = limits_.iova_ranges;
  if (usable.empty()) usable.push_back({Iova{0}, Iova{UINT64_MAX}});
  for (const auto& range : usable) {
    std::uint64_t at = range.start.value();
    const std::uint64_t end = range.last.value();
    bool covered = false;  // a mapping reaches the range's end
    for (const auto& [iova, m] : dma_) {
      const std::uint64_t first = iova.value(), last = iova.value() + m.size - 1;
      if (last < at) continue;
      if (first > end) break;
      if (first > at) {
        if (auto ok = gap(at, first - 1); !ok) return fail(ok.error().context(name_));
      }
      if (last >= end) {
        covered = true;
        break;
      }
      at = last + 1;
    }
    if (!covered) {
      if (auto ok = gap(at, end); !ok) return fail(ok.error().context(name_));
    }
  }
  for (const auto& [iova, m] : dma_)
    if (auto ok = vfio_.iommu->claim_mapping(iova, m.size, m.memory.address(), m.readable, m.writable); !ok)
      return fail(ok.error().context(name_));
  return {};
}

const nlohmann::json* host_state(const nlohmann::json& device_state) {
  if (!device_state.is_object()) return nullptr;
  if (device_state.value("kind", std::string()) == "vfio-host") return &device_state;
  const auto f = device_state.find("function");
  return f == device_state.end() ? nullptr : host_state(*f);
}

Result<OpenedVfio> adopt_saved_vfio(const nlohmann::json& j, sys::FdTable& fds) {
  auto api = state::text(j, "api");
  auto device = state::u64(j, "device_fd");
  auto iommu = state::array(j, "iommu_fds");
  auto ioas = state::u64(j, "ioas");
  if (!api || !device || !iommu || !ioas)
    return fail(!api ? api.error() : !device ? device.error() : !iommu ? iommu.error() : ioas.error());
  auto dev = fds.take(*device);
  if (!dev) return fail(dev.error());
  std::vector<sys::UniqueFd> held;
  for (const auto& e : **iommu) {
    if (!e.is_number_unsigned()) return fail_errno(EINVAL, "hand-over state: iommu_fds holds a non-index");
    auto fd = fds.take(e.get<std::uint64_t>());
    if (!fd) return fail(fd.error());
    held.push_back(std::move(*fd));
  }
  if (*ioas > UINT32_MAX) return fail_errno(EINVAL, "hand-over state: IOAS {} does not fit 32 bits", *ioas);
  return adopt_vfio(*api, std::move(*dev), std::move(held), static_cast<std::uint32_t>(*ioas));
}

}  // namespace nvgrace::vfio::host
