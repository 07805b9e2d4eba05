#include "nvgrace/vfio/host/dax.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

#include <fmt/format.h>

#include "nvgrace/common/size.hpp"
#include "nvgrace/vfio/host/memory_type.hpp"

namespace nvgrace::vfio::host {

namespace {

Result<std::uint64_t> read_number(const std::filesystem::path& file) {
  std::ifstream in(file);
  std::string text;
  if (!(in >> text)) return fail_errno(ENOENT, "cannot read {}", file.string());
  auto v = parse_size(text);  // decimal, or hex with 0x (`resource`)
  if (!v) return fail_errno(EINVAL, "{}: '{}' is not a number", file.string(), text);
  return *v;
}

// An instance's sysfs directory: its `resource`, `size` and `align`.
Result<DaxExtent> read_extent(const std::filesystem::path& node) {
  auto start = read_number(node / "resource");
  if (!start) return fail(start.error());
  auto size = read_number(node / "size");
  if (!size) return fail(size.error());
  auto align = read_number(node / "align");
  if (!align) return fail(align.error());
  return DaxExtent{*start, *size, *align};
}

bool holds(const DaxExtent& e, std::uint64_t base, std::uint64_t length) {
  const std::uint64_t end = e.start + e.size;
  return base >= e.start && base <= end && length <= end - base;
}

}  // namespace

Result<DaxExtent> dax_extent(int fd, const std::filesystem::path& sysfs) {
  struct stat st{};
  if (::fstat(fd, &st) != 0) return fail_errno(errno, "stat: {}", std::strerror(errno));
  if (!S_ISCHR(st.st_mode)) return fail_errno(EINVAL, "not a character device, so not a device-DAX instance");
  const auto node = sysfs / "dev" / "char" / fmt::format("{}:{}", major(st.st_rdev), minor(st.st_rdev));
  std::error_code ec;
  const auto subsystem = std::filesystem::read_symlink(node / "subsystem", ec).filename().string();
  if (subsystem != "dax")
    return fail_errno(EINVAL, "{} is a {} device, not a device-DAX instance (/dev/daxX.Y)", node.string(),
                      subsystem.empty() ? "non-dax" : subsystem);
  return read_extent(node);
}

Result<std::uint64_t> dax_usemem_offset(const pciemu::Layout& layout, const DaxExtent& extent,
                                        std::string_view name) {
  if (!layout.usemem) return fail_errno(EINVAL, "no fake BARs to back");
  if (layout.resmem)
    return fail_errno(EPERM,
                      "{}: device-DAX maps write-back only, and resmem (BAR2, {}) must be Normal non-cacheable "
                      "(R19, R40); a layout with resmem needs the kernel's nvgrace-gpu",
                      name, format_size(layout.resmem->length));
  const auto& use = *layout.usemem;
  if (!holds(extent, use.host_base, use.length))
    return fail_errno(ERANGE, "{} holds {:#x}..{:#x}; the GPU memory's usemem is {:#x}..{:#x}", name, extent.start,
                      extent.start + extent.size, use.host_base, use.host_base + use.length);
  const std::uint64_t offset = use.host_base - extent.start;
  const std::uint64_t granule = std::max<std::uint64_t>(extent.align, sys::page_size());
  if (offset % granule != 0 || use.length % granule != 0)
    return fail_errno(EINVAL,
                      "{} maps in {} units (its align); usemem at offset {:#x}, {:#x} bytes, is not on them: give "
                      "the instance an align it is on (4096 always is)",
                      name, format_size(granule), offset, use.length);
  return offset;
}

Result<std::vector<DaxInstance>> dax_instances(const std::filesystem::path& sysfs) {
  std::vector<DaxInstance> out;
  const auto bus = sysfs / "bus/dax/devices";
  std::error_code ec;
  if (!std::filesystem::is_directory(bus, ec)) return out;
  for (const auto& entry : std::filesystem::directory_iterator(bus, ec)) {
    auto extent = read_extent(entry.path());
    if (!extent) return fail(extent.error());
    out.push_back({entry.path().filename().string(), *extent});
  }
  if (ec) return fail_errno(ec.value(), "listing {}: {}", bus.string(), ec.message());
  std::ranges::sort(out, {}, &DaxInstance::name);
  return out;
}

std::optional<DaxRoute> find_dax_route(const pciemu::Layout& layout, const std::vector<DaxInstance>& instances,
                                       std::string_view kernel_release) {
  if (!layout.usemem) return std::nullopt;
  for (const auto& i : instances) {
    if (!holds(i.extent, layout.usemem->host_base, layout.usemem->length)) continue;
    auto offset = dax_usemem_offset(layout, i.extent, i.name);  // resmem, the granule
    if (!offset) return DaxRoute{i.name, false, offset.error().message};
    auto type = dax_memory_type(kernel_release);
    if (!type.usable) return DaxRoute{i.name, false, fmt::format("{}; instead, {}", type.why, type.instead)};
    return DaxRoute{i.name, true, ""};
  }
  return std::nullopt;
}

Result<std::unique_ptr<MemoryBackend>> make_dax_backend(const pciemu::Layout& layout, sys::UniqueFd fd,
                                                        const DaxExtent& extent, std::string name) {
  auto offset = dax_usemem_offset(layout, extent, name);
  if (!offset) return fail(offset.error());
  const auto& use = *layout.usemem;
  const std::uint64_t granule = std::max<std::uint64_t>(extent.align, sys::page_size());
  auto map = sys::Mapping::map(fd.get(), *offset, use.length, std::max(granule, sys::huge_alignment(use.length)),
                               PROT_READ | PROT_WRITE, MAP_SHARED);
  if (!map) return fail(map.error().context(name));
  return make_contiguous_backend("dax", fmt::format("{} ({:#x}+{:#x}, write-back) at offset {:#x}", name, extent.start,
                                                    extent.size, *offset),
                                 std::move(fd), std::move(*map), layout, *offset);
}

Result<std::unique_ptr<MemoryBackend>> open_dax_backend(const pciemu::Layout& layout,
                                                        const std::filesystem::path& path,
                                                        const std::filesystem::path& sysfs) {
  sys::UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd) return fail_errno(errno, "opening {}: {}", path.string(), std::strerror(errno));
  auto extent = dax_extent(fd.get(), sysfs);
  if (!extent) return fail(extent.error().context(path.string()));
  return make_dax_backend(layout, std::move(fd), *extent, path.string());
}

}  // namespace nvgrace::vfio::host
