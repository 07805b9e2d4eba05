#include "nvgrace/vfio/host/host_vfio.hpp"

#include <fcntl.h>
#include <linux/iommufd.h>
#include <linux/vfio.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <algorithm>
#include <cstring>

#include <fmt/format.h>

namespace nvgrace::vfio {
namespace {

Result<UniqueFd> open_fd(const std::filesystem::path& p) {
  UniqueFd fd(::open(p.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd) return fail_errno(errno, "opening {}: {}", p.string(), std::strerror(errno));
  return fd;
}

Result<void> ioctl_or_fail(int fd, unsigned long req, void* arg, const char* what) {
  if (::ioctl(fd, req, arg) != 0) return fail_errno(errno, "{}: {}", what, std::strerror(errno));
  return {};
}

std::string flag_names(std::uint32_t f) {
  std::string s;
  if (f & VFIO_REGION_INFO_FLAG_READ) s += "read,";
  if (f & VFIO_REGION_INFO_FLAG_WRITE) s += "write,";
  if (f & VFIO_REGION_INFO_FLAG_MMAP) s += "mmap,";
  if (!s.empty()) s.pop_back();
  return s.empty() ? "none" : s;
}

class HostBackend final : public MemoryBackend {
 public:
  HostBackend(HostVfioDevice dev, pciemu::Layout layout) : dev_(std::move(dev)), layout_(std::move(layout)) {}
  std::string_view kind() const override { return "host-vfio"; }
  std::optional<MemoryRange> range(pciemu::MemRole role) const override {
    const auto& m = role == pciemu::MemRole::usemem ? layout_.usemem : layout_.resmem;
    const auto& map = maps_[role == pciemu::MemRole::usemem ? 0 : 1];
    if (!m || !map.data()) return std::nullopt;
    return MemoryRange{map.data(), m->length, dev_.fd(), offsets_[role == pciemu::MemRole::usemem ? 0 : 1],
                       m->cacheable ? CacheMode::write_back : CacheMode::write_combined};
  }
  [[nodiscard]] int fd() const { return dev_.fd(); }
  Mapping maps_[2];
  std::uint64_t offsets_[2] = {0, 0};

 private:
  HostVfioDevice dev_;
  pciemu::Layout layout_;
};

}  // namespace

Result<HostVfioDevice> HostVfioDevice::open_group(const std::filesystem::path& group, const std::string& bdf) {
  HostVfioDevice d;
  auto container = open_fd("/dev/vfio/vfio");
  if (!container) return fail(container.error());
  auto grp = open_fd(group);
  if (!grp) return fail(grp.error());
  vfio_group_status status{};
  status.argsz = sizeof status;
  if (auto ok = ioctl_or_fail(grp->get(), VFIO_GROUP_GET_STATUS, &status, "VFIO_GROUP_GET_STATUS"); !ok) return fail(ok.error());
  if (!(status.flags & VFIO_GROUP_FLAGS_VIABLE))
    return fail_errno(EBUSY, "{}: group not viable (bind every device of the group to vfio)", group.string());
  int cfd = container->get();
  if (auto ok = ioctl_or_fail(grp->get(), VFIO_GROUP_SET_CONTAINER, &cfd, "VFIO_GROUP_SET_CONTAINER"); !ok)
    return fail(ok.error());
  if (::ioctl(cfd, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) != 0)
    return fail_errno(errno, "VFIO_SET_IOMMU(TYPE1v2): {}", std::strerror(errno));
  const int dfd = ::ioctl(grp->get(), VFIO_GROUP_GET_DEVICE_FD, bdf.c_str());
  if (dfd < 0) return fail_errno(errno, "VFIO_GROUP_GET_DEVICE_FD({}): {}", bdf, std::strerror(errno));
  d.container_ = std::move(*container);
  d.group_ = std::move(*grp);
  d.device_ = UniqueFd(dfd);
  return d;
}

Result<HostVfioDevice> HostVfioDevice::open_cdev(const std::filesystem::path& cdev) {
  HostVfioDevice d;
  auto iommu = open_fd("/dev/iommu");
  if (!iommu) return fail(iommu.error());
  auto dev = open_fd(cdev);
  if (!dev) return fail(dev.error());
  vfio_device_bind_iommufd bind{};
  bind.argsz = sizeof bind;
  bind.iommufd = iommu->get();
  if (auto ok = ioctl_or_fail(dev->get(), VFIO_DEVICE_BIND_IOMMUFD, &bind, "VFIO_DEVICE_BIND_IOMMUFD"); !ok)
    return fail(ok.error());
  iommu_ioas_alloc ioas{};
  ioas.size = sizeof ioas;
  if (auto ok = ioctl_or_fail(iommu->get(), IOMMU_IOAS_ALLOC, &ioas, "IOMMU_IOAS_ALLOC"); !ok) return fail(ok.error());
  vfio_device_attach_iommufd_pt attach{};
  attach.argsz = sizeof attach;
  attach.pt_id = ioas.out_ioas_id;
  if (auto ok = ioctl_or_fail(dev->get(), VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach, "VFIO_DEVICE_ATTACH_IOMMUFD_PT"); !ok)
    return fail(ok.error());
  d.container_ = std::move(*iommu);
  d.device_ = std::move(*dev);
  return d;
}

Result<DecodedRegionInfo> HostVfioDevice::region_info(unsigned index) const {
  std::vector<std::uint8_t> buf(sizeof(vfio_region_info));
  for (int attempt = 0; attempt < 2; ++attempt) {
    vfio_region_info info{};
    info.argsz = static_cast<std::uint32_t>(buf.size());
    info.index = index;
    std::memcpy(buf.data(), &info, sizeof info);
    if (::ioctl(device_.get(), VFIO_DEVICE_GET_REGION_INFO, buf.data()) != 0)
      return fail_errno(errno, "VFIO_DEVICE_GET_REGION_INFO({}): {}", index, std::strerror(errno));
    std::memcpy(&info, buf.data(), sizeof info);
    if (info.argsz <= buf.size()) return decode_region_info(buf);
    buf.assign(info.argsz, 0);  // the kernel asks for room for the capabilities
  }
  return fail_errno(EMSGSIZE, "region {} info keeps growing", index);
}

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

Result<std::unique_ptr<MemoryBackend>> make_host_vfio_backend(HostVfioDevice device, const pciemu::Layout& layout) {
  if (layout.passthrough || !layout.usemem) return fail_errno(EINVAL, "the device has no fake BARs: nothing to map");
  // The fake BARs as the model says the kernel driver reports them (R16).
  std::vector<const pciemu::MemRegion*> mems;
  std::vector<RegionDesc> model;
  std::vector<DecodedRegionInfo> host;
  for (const auto* m : {&layout.usemem, &layout.resmem}) {
    if (!*m) continue;
    mems.push_back(&**m);
    model.push_back({(*m)->bar_index, (*m)->bar_size,
                     VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE | VFIO_REGION_INFO_FLAG_MMAP,
                     {{0, (*m)->length}}, !(*m)->cacheable});
    auto info = device.region_info((*m)->bar_index);
    if (!info) return fail(info.error());
    host.push_back(*info);
  }
  if (auto diffs = compare_regions(model, host); !diffs.empty()) {
    std::string all;
    for (const auto& d : diffs) all += (all.empty() ? "" : "; ") + d;
    return fail_errno(EINVAL, "the host's regions differ from the model: {}", all);
  }
  auto backend = std::make_unique<HostBackend>(std::move(device), layout);
  for (std::size_t i = 0; i < mems.size(); ++i) {
    const std::size_t slot = mems[i]->role == pciemu::MemRole::usemem ? 0 : 1;
    auto map = Mapping::map(backend->fd(), host[i].offset, mems[i]->length, huge_alignment(mems[i]->length),
                            PROT_READ | PROT_WRITE, MAP_SHARED);
    if (!map) return fail(map.error().context(fmt::format("mapping host region {}", mems[i]->bar_index)));
    backend->maps_[slot] = std::move(*map);
    backend->offsets_[slot] = host[i].offset;
  }
  return backend;
}

}  // namespace nvgrace::vfio
