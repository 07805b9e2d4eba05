#include "nvgrace/vfio/host/vfio_io.hpp"

#include <fcntl.h>
#include <linux/iommufd.h>
#include <linux/vfio.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "nvgrace/vfio/host/pci_host.hpp"
#include "nvgrace/vfio/wire.hpp"

namespace nvgrace::vfio::host {
namespace fs = std::filesystem;
namespace {

std::uint64_t page_size() { return static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE)); }

Result<sys::UniqueFd> open_node(const fs::path& p, const char* what) {
  sys::UniqueFd fd(::open(p.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd) {
    const int e = errno;
    if (e == EACCES || e == EPERM)
      return fail_errno(e, "no access to {} ({}): {} needs permission on it", p.string(), std::strerror(e), what);
    return fail_errno(e, "opening {}: {}", p.string(), std::strerror(e));
  }
  return fd;
}

// The kernel's answer to "attach this device": without interrupt remapping
// the device's MSIs cannot be isolated and VFIO refuses with EPERM.
std::string attach_hint(int err) {
  return err == EPERM ? " (the IOMMU has no interrupt remapping: on QEMU, use intel-iommu,intremap=on)" : "";
}

class KernelVfioDevice final : public VfioDeviceIo {
 public:
  explicit KernelVfioDevice(sys::UniqueFd fd) : fd_(std::move(fd)) {}
  int fd() const override { return fd_.get(); }

  Result<DeviceInfo> info() override {
    vfio_device_info i{};
    i.argsz = sizeof i;
    if (::ioctl(fd_.get(), VFIO_DEVICE_GET_INFO, &i) != 0)
      return fail_errno(errno, "VFIO_DEVICE_GET_INFO: {}", std::strerror(errno));
    return DeviceInfo{i.flags, i.num_regions, i.num_irqs};
  }

  Result<std::vector<std::uint8_t>> region_info(unsigned index) override {
    std::vector<std::uint8_t> buf(sizeof(vfio_region_info));
    for (int attempt = 0; attempt < 3; ++attempt) {
      vfio_region_info info{};
      info.argsz = static_cast<std::uint32_t>(buf.size());
      info.index = index;
      std::memcpy(buf.data(), &info, sizeof info);
      if (::ioctl(fd_.get(), VFIO_DEVICE_GET_REGION_INFO, buf.data()) != 0)
        return fail_errno(errno, "VFIO_DEVICE_GET_REGION_INFO({}): {}", index, std::strerror(errno));
      std::memcpy(&info, buf.data(), sizeof info);
      if (info.argsz <= buf.size()) {
        buf.resize(std::max<std::size_t>(info.argsz, sizeof info));
        return buf;
      }
      buf.assign(info.argsz, 0);  // the kernel asks for room for the capabilities
    }
    return fail_errno(EMSGSIZE, "VFIO_DEVICE_GET_REGION_INFO({}): the info keeps growing", index);
  }

  Result<std::vector<std::uint8_t>> region_info_raw(unsigned index, std::uint32_t argsz) override {
    std::vector<std::uint8_t> buf(std::max<std::size_t>(argsz, sizeof(vfio_region_info)), 0);
    vfio_region_info info{};
    info.argsz = argsz;
    info.index = index;
    std::memcpy(buf.data(), &info, sizeof info);
    if (::ioctl(fd_.get(), VFIO_DEVICE_GET_REGION_INFO, buf.data()) != 0)
      return fail_errno(errno, "VFIO_DEVICE_GET_REGION_INFO({}, argsz {}): {}", index, argsz, std::strerror(errno));
    std::memcpy(&info, buf.data(), sizeof info);
    buf.resize(info.argsz <= argsz ? std::max<std::size_t>(info.argsz, sizeof info) : sizeof info);
    return buf;
  }

  Result<void> ioeventfd(std::uint64_t offset, std::uint32_t flags, std::uint64_t data, int fd) override {
    vfio_device_ioeventfd e{};
    e.argsz = sizeof e;
    e.flags = flags;
    e.offset = offset;
    e.data = data;
    e.fd = fd;
    if (::ioctl(fd_.get(), VFIO_DEVICE_IOEVENTFD, &e) != 0)
      return fail_errno(errno, "VFIO_DEVICE_IOEVENTFD: {}", std::strerror(errno));
    return {};
  }

  Result<IrqInfo> irq_info(unsigned index) override {
    vfio_irq_info i{};
    i.argsz = sizeof i;
    i.index = index;
    if (::ioctl(fd_.get(), VFIO_DEVICE_GET_IRQ_INFO, &i) != 0)
      return fail_errno(errno, "VFIO_DEVICE_GET_IRQ_INFO({}): {}", index, std::strerror(errno));
    return IrqInfo{i.index, i.flags, i.count};
  }

  Result<std::size_t> pread(std::span<std::uint8_t> out, std::uint64_t at) override {
    const ssize_t n = ::pread(fd_.get(), out.data(), out.size(), static_cast<off_t>(at));
    if (n < 0) return fail_errno(errno, "pread of {} bytes at {:#x}: {}", out.size(), at, std::strerror(errno));
    return static_cast<std::size_t>(n);
  }

  Result<std::size_t> pwrite(std::span<const std::uint8_t> in, std::uint64_t at) override {
    const ssize_t n = ::pwrite(fd_.get(), in.data(), in.size(), static_cast<off_t>(at));
    if (n < 0) return fail_errno(errno, "pwrite of {} bytes at {:#x}: {}", in.size(), at, std::strerror(errno));
    return static_cast<std::size_t>(n);
  }

  Result<void> set_irqs(std::span<const std::uint8_t> irq_set) override {
    if (::ioctl(fd_.get(), VFIO_DEVICE_SET_IRQS, irq_set.data()) != 0)
      return fail_errno(errno, "VFIO_DEVICE_SET_IRQS: {}", std::strerror(errno));
    return {};
  }

  Result<void> reset() override {
    if (::ioctl(fd_.get(), VFIO_DEVICE_RESET) != 0) return fail_errno(errno, "VFIO_DEVICE_RESET: {}", std::strerror(errno));
    return {};
  }

 private:
  sys::UniqueFd fd_;
};

// The legacy API: a container with the type1v2 IOMMU and the device's group.
class Type1Iommu final : public Iommu {
 public:
  Type1Iommu(sys::UniqueFd container, sys::UniqueFd group) : container_(std::move(container)), group_(std::move(group)) {}
  std::string_view api() const override { return "type1"; }
  const DmaLimits& limits() const override { return limits_; }

  // VFIO_IOMMU_GET_INFO and its capability chain: page sizes, usable IOVA
  // ranges (IOVA_RANGE), how many more mappings the container takes (DMA_AVAIL).
  Result<void> query() {
    std::vector<std::uint8_t> buf(sizeof(vfio_iommu_type1_info));
    for (int attempt = 0; attempt < 3; ++attempt) {
      vfio_iommu_type1_info info{};
      info.argsz = static_cast<std::uint32_t>(buf.size());
      std::memcpy(buf.data(), &info, sizeof info);
      if (::ioctl(container_.get(), VFIO_IOMMU_GET_INFO, buf.data()) != 0)
        return fail_errno(errno, "VFIO_IOMMU_GET_INFO: {}", std::strerror(errno));
      std::memcpy(&info, buf.data(), sizeof info);
      if (info.argsz > buf.size()) {
        buf.assign(info.argsz, 0);
        continue;
      }
      limits_.pgsizes = (info.flags & VFIO_IOMMU_INFO_PGSIZES) ? info.iova_pgsizes : page_size();
      limits_.needs_fd = true;
      if (!(info.flags & VFIO_IOMMU_INFO_CAPS)) return {};
      for (std::uint32_t at = info.cap_offset, hops = 0; at != 0 && hops < 64; ++hops) {
        if (at < sizeof info || at + sizeof(vfio_info_cap_header) > buf.size()) break;
        const auto hdr = wire::load<vfio_info_cap_header>(buf, at);
        if (hdr.id == VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE &&
            at + sizeof(vfio_iommu_type1_info_cap_iova_range) <= buf.size()) {
          const auto cap = wire::load<vfio_iommu_type1_info_cap_iova_range>(buf, at);
          for (std::uint32_t i = 0; i < cap.nr_iovas; ++i) {
            const std::size_t r = at + sizeof cap + i * sizeof(vfio_iova_range);
            if (r + sizeof(vfio_iova_range) > buf.size()) break;
            const auto range = wire::load<vfio_iova_range>(buf, r);
            limits_.iova_ranges.push_back({Iova{range.start}, Iova{range.end}});
          }
        } else if (hdr.id == VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL &&
                   at + sizeof(vfio_iommu_type1_info_dma_avail) <= buf.size()) {
          limits_.max_maps = wire::load<vfio_iommu_type1_info_dma_avail>(buf, at).avail;
        }
        at = hdr.next;
      }
      return {};
    }
    return fail_errno(EMSGSIZE, "VFIO_IOMMU_GET_INFO keeps growing");
  }

  Result<void> map(Iova iova, std::uint64_t size, HostVirtAddr vaddr, bool r, bool w) override {
    return map_dma(iova, size, vaddr, (r ? VFIO_DMA_MAP_FLAG_READ : 0u) | (w ? VFIO_DMA_MAP_FLAG_WRITE : 0u));
  }

  Result<void> unmap(Iova iova, std::uint64_t size) override {
    auto removed = unmap_dma(iova, size, 0);
    if (!removed) return fail(removed.error());
    if (*removed != size)
      return fail_errno(EINVAL, "VFIO_IOMMU_UNMAP_DMA {:#x}+{:#x} removed {:#x} bytes", iova, size, *removed);
    return {};
  }

  std::vector<int> descriptors() const override { return {container_.get(), group_.get()}; }

  // VFIO_UPDATE_VADDR: invalidate the mapping's address (EINVAL: a
  // predecessor already did, and died before setting it), then set it here;
  // ENOENT: the mapping is gone (removed, not yet recorded): made again.
  Result<void> claim_mapping(Iova iova, std::uint64_t size, HostVirtAddr vaddr, bool r, bool w) override {
    if (::ioctl(container_.get(), VFIO_CHECK_EXTENSION, VFIO_UPDATE_VADDR) > 0) {
      if (auto gone = unmap_dma(iova, size, VFIO_DMA_UNMAP_FLAG_VADDR); !gone && gone.error().err != EINVAL)
        return fail(gone.error());
      auto set = map_dma(iova, size, vaddr, VFIO_DMA_MAP_FLAG_VADDR);
      if (set || set.error().err != ENOENT) return set;
    }
    // Without VFIO_UPDATE_VADDR the address is kept only for pinning by
    // mdevs, which cannot be in this container: a mapping that is there
    // stays as it is (EEXIST).
    auto made = map(iova, size, vaddr, r, w);
    if (!made && made.error().err == EEXIST) return {};
    return made;
  }

  Result<void> unmap_within(Iova first, Iova last) override {
    auto removed = unmap_dma(first, last.value() - first.value() + 1, 0);
    if (!removed) return fail(removed.error());
    return {};
  }

 private:
  // VFIO_IOMMU_MAP_DMA / UNMAP_DMA with `flags`; an unmap says how many
  // bytes it removed.
  Result<void> map_dma(Iova iova, std::uint64_t size, HostVirtAddr vaddr, std::uint32_t flags) {
    vfio_iommu_type1_dma_map m{};
    m.argsz = sizeof m;
    m.flags = flags;
    m.vaddr = vaddr.value();
    m.iova = iova.value();
    m.size = size;
    if (::ioctl(container_.get(), VFIO_IOMMU_MAP_DMA, &m) != 0)
      return fail_errno(errno, "VFIO_IOMMU_MAP_DMA{} {:#x}+{:#x}: {}",
                        (flags & VFIO_DMA_MAP_FLAG_VADDR) ? "(VADDR)" : "", iova, size, std::strerror(errno));
    return {};
  }
  Result<std::uint64_t> unmap_dma(Iova iova, std::uint64_t size, std::uint32_t flags) {
    vfio_iommu_type1_dma_unmap u{};
    u.argsz = sizeof u;
    u.flags = flags;
    u.iova = iova.value();
    u.size = size;
    if (::ioctl(container_.get(), VFIO_IOMMU_UNMAP_DMA, &u) != 0)
      return fail_errno(errno, "VFIO_IOMMU_UNMAP_DMA{} {:#x}+{:#x}: {}",
                        (flags & VFIO_DMA_UNMAP_FLAG_VADDR) ? "(VADDR)" : "", iova, size, std::strerror(errno));
    return u.size;
  }

 private:
  sys::UniqueFd container_;
  sys::UniqueFd group_;
  DmaLimits limits_;
};

// A no-IOMMU group (vfio.enable_unsafe_noiommu_mode): the device is not
// isolated, and nothing can be mapped for it.
class NoIommu final : public Iommu {
 public:
  NoIommu(sys::UniqueFd container, sys::UniqueFd group) : container_(std::move(container)), group_(std::move(group)) {
    limits_.pgsizes = page_size();
    limits_.max_maps = 0;
    limits_.needs_fd = true;
  }
  std::string_view api() const override { return "noiommu"; }
  const DmaLimits& limits() const override { return limits_; }
  Result<void> map(Iova iova, std::uint64_t size, HostVirtAddr, bool, bool) override {
    return fail_errno(EPERM, "DMA map {:#x}+{:#x}: the device is in a no-IOMMU group, which has no IOMMU to map with",
                      iova, size);
  }
  Result<void> unmap(Iova iova, std::uint64_t size) override {
    return fail_errno(EINVAL, "DMA unmap {:#x}+{:#x}: nothing is mapped in a no-IOMMU group", iova, size);
  }
  std::vector<int> descriptors() const override { return {container_.get(), group_.get()}; }
  Result<void> claim_mapping(Iova iova, std::uint64_t size, HostVirtAddr, bool, bool) override {
    return fail_errno(EINVAL, "DMA mapping {:#x}+{:#x} in a no-IOMMU group, which has none", iova, size);
  }
  Result<void> unmap_within(Iova, Iova) override { return {}; }

 private:
  sys::UniqueFd container_;
  sys::UniqueFd group_;
  DmaLimits limits_;
};

// The iommufd API: the device bound to /dev/iommu, an IOAS attached to it.
class IommufdIoas final : public Iommu {
 public:
  IommufdIoas(sys::UniqueFd iommufd, std::uint32_t ioas) : iommufd_(std::move(iommufd)), ioas_(ioas) {}
  std::string_view api() const override { return "iommufd"; }
  const DmaLimits& limits() const override { return limits_; }

  // IOMMU_IOAS_IOVA_RANGES (asked twice: the first call says how many). iommufd
  // in 6.12 has no page-size query; its granule is out_iova_alignment.
  Result<void> query() {
    iommu_ioas_iova_ranges q{};
    q.size = sizeof q;
    q.ioas_id = ioas_;
    if (::ioctl(iommufd_.get(), IOMMU_IOAS_IOVA_RANGES, &q) != 0 && errno != EMSGSIZE)
      return fail_errno(errno, "IOMMU_IOAS_IOVA_RANGES: {}", std::strerror(errno));
    std::vector<iommu_iova_range> ranges(q.num_iovas);
    q.allowed_iovas = reinterpret_cast<std::uint64_t>(ranges.data());
    if (!ranges.empty() && ::ioctl(iommufd_.get(), IOMMU_IOAS_IOVA_RANGES, &q) != 0)
      return fail_errno(errno, "IOMMU_IOAS_IOVA_RANGES: {}", std::strerror(errno));
    for (std::size_t i = 0; i < std::min<std::size_t>(q.num_iovas, ranges.size()); ++i)
      limits_.iova_ranges.push_back({Iova{ranges[i].start}, Iova{ranges[i].last}});
    limits_.pgsizes = std::max<std::uint64_t>(page_size(), q.out_iova_alignment);
    limits_.needs_fd = true;
    return {};
  }

  Result<void> map(Iova iova, std::uint64_t size, HostVirtAddr vaddr, bool r, bool w) override {
    iommu_ioas_map m{};
    m.size = sizeof m;
    m.flags = IOMMU_IOAS_MAP_FIXED_IOVA | (r ? static_cast<std::uint32_t>(IOMMU_IOAS_MAP_READABLE) : 0u) |
              (w ? static_cast<std::uint32_t>(IOMMU_IOAS_MAP_WRITEABLE) : 0u);
    m.ioas_id = ioas_;
    m.user_va = vaddr.value();
    m.length = size;
    m.iova = iova.value();
    if (::ioctl(iommufd_.get(), IOMMU_IOAS_MAP, &m) != 0)
      return fail_errno(errno, "IOMMU_IOAS_MAP {:#x}+{:#x}: {}", iova, size, std::strerror(errno));
    return {};
  }

  Result<void> unmap(Iova iova, std::uint64_t size) override {
    iommu_ioas_unmap u{};
    u.size = sizeof u;
    u.ioas_id = ioas_;
    u.iova = iova.value();
    u.length = size;
    if (::ioctl(iommufd_.get(), IOMMU_IOAS_UNMAP, &u) != 0)
      return fail_errno(errno, "IOMMU_IOAS_UNMAP {:#x}+{:#x}: {}", iova, size, std::strerror(errno));
    return {};
  }

  std::vector<int> descriptors() const override { return {iommufd_.get()}; }
  std::uint32_t ioas() const override { return ioas_; }
  // A mapping that is there stays (EEXIST); one that is gone is made again.
  Result<void> claim_mapping(Iova iova, std::uint64_t size, HostVirtAddr vaddr, bool r, bool w) override {
    auto made = map(iova, size, vaddr, r, w);
    if (!made && made.error().err == EEXIST) return {};
    return made;
  }

  Result<void> unmap_within(Iova first, Iova last) override {
    auto removed = unmap(first, last.value() - first.value() + 1);
    if (!removed && removed.error().err == ENOENT) return {};  // nothing there
    return removed;
  }

 private:
  sys::UniqueFd iommufd_;
  std::uint32_t ioas_;
  DmaLimits limits_;
};

Result<OpenedVfio> open_cdev(const VfioOpenOptions& o, const PciHostState& st) {
  if (!st.vfio_cdev)
    return fail_errno(ENODEV, "{} has no VFIO device cdev ({}/bus/pci/devices/{}/vfio-dev is missing: the kernel has "
                      "no CONFIG_VFIO_DEVICE_CDEV, or the device is not bound to vfio-pci)",
                      o.bdf, o.sysfs.string(), o.bdf);
  auto iommufd = open_node(o.dev / "iommu", "the iommufd API");
  if (!iommufd) return fail(iommufd.error());
  auto dev = open_node(o.dev / "vfio/devices" / *st.vfio_cdev, "the VFIO device cdev");
  if (!dev) return fail(dev.error());
  vfio_device_bind_iommufd bind{};
  bind.argsz = sizeof bind;
  bind.iommufd = iommufd->get();
  if (::ioctl(dev->get(), VFIO_DEVICE_BIND_IOMMUFD, &bind) != 0)
    return fail_errno(errno, "VFIO_DEVICE_BIND_IOMMUFD({}): {}{}", o.bdf, std::strerror(errno), attach_hint(errno));
  iommu_ioas_alloc ioas{};
  ioas.size = sizeof ioas;
  if (::ioctl(iommufd->get(), IOMMU_IOAS_ALLOC, &ioas) != 0)
    return fail_errno(errno, "IOMMU_IOAS_ALLOC: {}", std::strerror(errno));
  vfio_device_attach_iommufd_pt attach{};
  attach.argsz = sizeof attach;
  attach.pt_id = ioas.out_ioas_id;  // comes back as the HWPT id: keep the IOAS id for maps
  if (::ioctl(dev->get(), VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach) != 0)
    return fail_errno(errno, "VFIO_DEVICE_ATTACH_IOMMUFD_PT: {}{}", std::strerror(errno), attach_hint(errno));
  auto iommu = std::make_unique<IommufdIoas>(std::move(*iommufd), ioas.out_ioas_id);
  if (auto ok = iommu->query(); !ok) return fail(ok.error());
  return OpenedVfio{std::make_unique<KernelVfioDevice>(std::move(*dev)), std::move(iommu)};
}

Result<OpenedVfio> open_group(const VfioOpenOptions& o, const PciHostState& st) {
  if (!st.iommu_group)
    return fail_errno(ENODEV, "{} is in no IOMMU group: the kernel runs without an IOMMU (boot with intel_iommu=on "
                      "or the platform's equivalent)", o.bdf);
  // VFIO names a no-IOMMU group's node noiommu-N.
  std::error_code ec;
  const auto noiommu_node = o.dev / "vfio" / fmt::format("noiommu-{}", *st.iommu_group);
  const bool noiommu = fs::exists(noiommu_node, ec);
  if (noiommu && !o.allow_noiommu)
    return fail_errno(EPERM, "{} is in a no-IOMMU group ({}; vfio.enable_unsafe_noiommu_mode): nothing isolates its "
                      "DMA, and no DMA mapping can be made; use it only when asked for explicitly",
                      o.bdf, noiommu_node.string());
  auto container = open_node(o.dev / "vfio/vfio", "the VFIO container API");
  if (!container) return fail(container.error());
  if (::ioctl(container->get(), VFIO_GET_API_VERSION) != VFIO_API_VERSION)
    return fail_errno(EINVAL, "{}/vfio/vfio speaks another VFIO API version", o.dev.string());
  const unsigned long type = noiommu ? VFIO_NOIOMMU_IOMMU : VFIO_TYPE1v2_IOMMU;
  if (::ioctl(container->get(), VFIO_CHECK_EXTENSION, type) <= 0)
    return fail_errno(ENOTSUP, "the VFIO container offers no {} IOMMU", noiommu ? "no-IOMMU" : "type1v2");
  auto group = open_node(noiommu ? noiommu_node : o.dev / "vfio" / std::to_string(*st.iommu_group),
                         "the VFIO group");
  if (!group) return fail(group.error());
  vfio_group_status status{};
  status.argsz = sizeof status;
  if (::ioctl(group->get(), VFIO_GROUP_GET_STATUS, &status) != 0)
    return fail_errno(errno, "VFIO_GROUP_GET_STATUS: {}", std::strerror(errno));
  if (!(status.flags & VFIO_GROUP_FLAGS_VIABLE))
    return fail_errno(EBUSY, "IOMMU group {} is not viable: every device in it must be bound to vfio-pci or to no "
                      "driver ({})", *st.iommu_group, st.group_members_text());
  int cfd = container->get();
  if (::ioctl(group->get(), VFIO_GROUP_SET_CONTAINER, &cfd) != 0)
    return fail_errno(errno, "VFIO_GROUP_SET_CONTAINER: {}", std::strerror(errno));
  if (::ioctl(cfd, VFIO_SET_IOMMU, type) != 0)
    return fail_errno(errno, "VFIO_SET_IOMMU({}): {}{}", noiommu ? "noiommu" : "type1v2", std::strerror(errno),
                      attach_hint(errno));
  const int dfd = ::ioctl(group->get(), VFIO_GROUP_GET_DEVICE_FD, o.bdf.to_string().c_str());
  if (dfd < 0) return fail_errno(errno, "VFIO_GROUP_GET_DEVICE_FD({}): {}", o.bdf, std::strerror(errno));
  sys::UniqueFd dev(dfd);
  if (noiommu)
    return OpenedVfio{std::make_unique<KernelVfioDevice>(std::move(dev)),
                      std::make_unique<NoIommu>(std::move(*container), std::move(*group))};
  auto iommu = std::make_unique<Type1Iommu>(std::move(*container), std::move(*group));
  if (auto ok = iommu->query(); !ok) return fail(ok.error());
  return OpenedVfio{std::make_unique<KernelVfioDevice>(std::move(dev)), std::move(iommu)};
}

}  // namespace

Result<OpenedVfio> adopt_vfio(std::string_view api, sys::UniqueFd device, std::vector<sys::UniqueFd> iommu,
                              std::uint32_t ioas) {
  const std::size_t want = api == "iommufd" ? 1 : 2;
  if (api != "iommufd" && api != "type1" && api != "noiommu")
    return fail_errno(EINVAL, "a VFIO device handed over through the unknown API '{}'", api);
  if (!device || iommu.size() != want || std::any_of(iommu.begin(), iommu.end(), [](const auto& f) { return !f; }))
    return fail_errno(EBADF, "a VFIO device handed over ({}) without its device fd and {} IOMMU descriptor(s)", api,
                      want);
  auto dev = std::make_unique<KernelVfioDevice>(std::move(device));
  if (auto info = dev->info(); !info) return fail(info.error().context("the handed-over VFIO device"));
  if (api == "iommufd") {
    auto ioas_obj = std::make_unique<IommufdIoas>(std::move(iommu[0]), ioas);
    if (auto ok = ioas_obj->query(); !ok) return fail(ok.error().context("the handed-over IOAS"));
    return OpenedVfio{std::move(dev), std::move(ioas_obj)};
  }
  if (api == "noiommu")
    return OpenedVfio{std::move(dev), std::make_unique<NoIommu>(std::move(iommu[0]), std::move(iommu[1]))};
  auto type1 = std::make_unique<Type1Iommu>(std::move(iommu[0]), std::move(iommu[1]));
  if (auto ok = type1->query(); !ok) return fail(ok.error().context("the handed-over container"));
  return OpenedVfio{std::move(dev), std::move(type1)};
}

std::string_view to_string(VfioApi api) {
  switch (api) {
    case VfioApi::cdev: return "cdev";
    case VfioApi::group: return "group";
    case VfioApi::automatic: break;
  }
  return "auto";
}

Result<OpenedVfio> open_vfio(const VfioOpenOptions& o) {
  auto st = probe_pci_host(o.sysfs, o.dev, o.bdf);
  if (!st) return fail(st.error());
  if (st->driver != "vfio-pci" && st->driver != kNvgraceGpuDriver) return fail_errno(EPERM, "{}", st->bind_advice());
  switch (o.api) {
    case VfioApi::cdev: return open_cdev(o, *st);
    case VfioApi::group: return open_group(o, *st);
    case VfioApi::automatic: break;
  }
  // A no-IOMMU device has a cdev too, but the group API is the one that
  // says so plainly (noiommu-N): take it.
  std::error_code ec;
  const bool noiommu =
      st->iommu_group && fs::exists(o.dev / "vfio" / fmt::format("noiommu-{}", *st->iommu_group), ec);
  if (st->vfio_cdev && st->dev_iommu && !noiommu) return open_cdev(o, *st);
  return open_group(o, *st);
}

}  // namespace nvgrace::vfio::host
