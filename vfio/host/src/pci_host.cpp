#include "nvgrace/vfio/host/pci_host.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>

#include <fmt/format.h>

#include "nvgrace/acpi/sysfs.hpp"
#include "nvgrace/sys/fd.hpp"
#include "nvgrace/vfio/host/memory_type.hpp"

namespace nvgrace::vfio::host {
namespace fs = std::filesystem;
namespace {

// The basename a sysfs symlink points to, or "" when there is no link.
std::string link_name(const fs::path& p) {
  std::error_code ec;
  const auto target = fs::read_symlink(p, ec);
  return ec ? std::string() : target.filename().string();
}

bool is_vfio_driver(const std::string& d) { return d == kVfioPciDriver || d == kNvgraceGpuDriver; }

// Whether `p` opens read-write, and if not, why.
std::optional<std::string> open_problem(const fs::path& p) {
  sys::UniqueFd fd(::open(p.c_str(), O_RDWR | O_CLOEXEC));
  if (fd) return std::nullopt;
  return fmt::format("{}: {}", p.string(), std::strerror(errno));
}

}  // namespace

bool PciHostState::group_viable() const {
  return std::all_of(group_members.begin(), group_members.end(),
                     [](const auto& m) { return m.second.empty() || is_vfio_driver(m.second); });
}

std::string PciHostState::group_members_text() const {
  std::string s;
  for (const auto& [b, d] : group_members) s += fmt::format("{}{} ({})", s.empty() ? "" : ", ", b, d.empty() ? "no driver" : d);
  return s;
}

std::string PciHostState::bind_advice() const {
  const std::string override_cmd =
      fmt::format("echo vfio-pci > /sys/bus/pci/devices/{}/driver_override", bdf);
  if (driver.empty())
    return fmt::format("{} is bound to no driver, not vfio-pci: bind it with '{}; echo {} > "
                       "/sys/bus/pci/drivers_probe'",
                       bdf, override_cmd, bdf);
  return fmt::format("{} is bound to {}, not vfio-pci: bind it with '{}; echo {} > "
                     "/sys/bus/pci/devices/{}/driver/unbind; echo {} > /sys/bus/pci/drivers_probe'",
                     bdf, driver, override_cmd, bdf, bdf, bdf);
}

Result<PciHostState> probe_pci_host(const fs::path& sysfs, const fs::path& dev, const Bdf& bdf) {
  const fs::path dir = sysfs / "bus/pci/devices" / bdf.to_string();
  std::error_code ec;
  if (!fs::exists(dir, ec)) return fail_errno(ENOENT, "no PCI device {} under {}", bdf, (sysfs / "bus/pci/devices").string());
  PciHostState st;
  st.bdf = bdf;
  st.vendor = acpi::read_sysfs_id(dir / "vendor");
  st.device = acpi::read_sysfs_id(dir / "device");
  st.driver = link_name(dir / "driver");
  if (const auto g = link_name(dir / "iommu_group"); !g.empty()) {
    unsigned n = 0;
    auto [p, e] = std::from_chars(g.data(), g.data() + g.size(), n);
    if (e == std::errc() && p == g.data() + g.size()) st.iommu_group = n;
    for (const auto& m : fs::directory_iterator(dir / "iommu_group/devices", ec))
      st.group_members.emplace_back(m.path().filename().string(), link_name(m.path() / "driver"));
    std::sort(st.group_members.begin(), st.group_members.end());
  }
  for (const auto& e : fs::directory_iterator(dir / "vfio-dev", ec))
    if (e.path().filename().string().starts_with("vfio")) st.vfio_cdev = e.path().filename().string();
  st.dev_iommu = fs::exists(dev / "iommu", ec);
  st.dev_vfio_container = fs::exists(dev / "vfio/vfio", ec);
  return st;
}

ServeReadiness serve_readiness(const PciHostState& st, const fs::path& dev, const std::optional<std::string>& memory) {
  ServeReadiness r;
  if (!is_vfio_driver(st.driver)) r.missing.push_back(st.bind_advice());
  if (!st.iommu_group)
    r.missing.push_back("no IOMMU group: the host runs without an IOMMU for this device");
  else if (!st.group_viable())
    r.missing.push_back(fmt::format("IOMMU group {} is not viable: {}", *st.iommu_group, st.group_members_text()));
  // The cdev API first (R26), else the group API.
  std::vector<std::string> cdev_problems, group_problems;
  if (!st.vfio_cdev) cdev_problems.push_back("no VFIO device cdev (CONFIG_VFIO_DEVICE_CDEV, or not bound to vfio-pci)");
  else if (auto p = open_problem(dev / "vfio/devices" / *st.vfio_cdev)) cdev_problems.push_back(*p);
  if (!st.dev_iommu) cdev_problems.push_back(fmt::format("{} missing (CONFIG_IOMMUFD)", (dev / "iommu").string()));
  else if (auto p = open_problem(dev / "iommu")) cdev_problems.push_back(*p);
  if (!st.dev_vfio_container) group_problems.push_back(fmt::format("{} missing", (dev / "vfio/vfio").string()));
  else if (auto p = open_problem(dev / "vfio/vfio")) group_problems.push_back(*p);
  if (st.iommu_group)
    if (auto p = open_problem(dev / "vfio" / std::to_string(*st.iommu_group))) group_problems.push_back(*p);
  if (cdev_problems.empty()) {
    r.api = "cdev";
  } else if (group_problems.empty()) {
    r.api = "group";
  } else {
    std::string all;
    for (const auto& p : cdev_problems) all += (all.empty() ? "" : "; ") + p;
    for (const auto& p : group_problems) all += "; " + p;
    r.missing.push_back("no VFIO API is usable: " + all);
  }
  if (memory == "mem") {
    if (const auto& type = devmem_memory_type(); !type.usable)
      r.missing.push_back(fmt::format("the fake BARs need Normal memory and /dev/mem gives usemem and resmem as {} "
                                      "here (R40): {}", type.usemem, type.instead));
    else if (auto p = open_problem(dev / "mem"))
      r.missing.push_back(fmt::format("/dev/mem is not reachable ({})", *p));
  } else if (memory) {
    if (auto p = open_problem(dev / *memory))
      r.missing.push_back(fmt::format("{} is not reachable ({})", (dev / *memory).string(), *p));
  }
  r.ready = r.missing.empty();
  return r;
}

}  // namespace nvgrace::vfio::host
