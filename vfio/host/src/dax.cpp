#include "nvgrace/vfio/host/dax.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include <fmt/format.h>

#include "nvgrace/common/size.hpp"

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
  DaxExtent e;
  auto start = read_number(node / "resource");
  if (!start) return fail(start.error());
  auto size = read_number(node / "size");
  if (!size) return fail(size.error());
  auto align = read_number(node / "align");
  if (!align) return fail(align.error());
  e.start = *start;
  e.size = *size;
  e.align = *align;
  return e;
}

Result<std::unique_ptr<MemoryBackend>> make_dax_backend(const pciemu::Layout& layout, sys::UniqueFd fd,
                                                        const DaxExtent& extent, std::string name) {
  if (!layout.usemem) return fail_errno(EINVAL, "no fake BARs to back");
  if (layout.resmem)
    return fail_errno(EPERM,
                      "{}: device-DAX maps write-back only, and resmem (BAR2, {}) must be Normal non-cacheable "
                      "(R19, R40); a layout with resmem needs the kernel's nvgrace-gpu",
                      name, format_size(layout.resmem->length));
  const auto& use = *layout.usemem;
  const std::uint64_t end = extent.start + extent.size;
  if (use.host_base < extent.start || use.host_base > end || use.length > end - use.host_base)
    return fail_errno(ERANGE, "{} holds {:#x}..{:#x}; the GPU memory's usemem is {:#x}..{:#x}", name, extent.start,
                      end, use.host_base, use.host_base + use.length);
  const std::uint64_t offset = use.host_base - extent.start;
  const std::uint64_t granule = std::max<std::uint64_t>(extent.align, sys::page_size());
  if (offset % granule != 0 || use.length % granule != 0)
    return fail_errno(EINVAL, "{} maps in {} units; usemem at offset {:#x}, {:#x} bytes, is not on them", name,
                      format_size(granule), offset, use.length);
  auto map = sys::Mapping::map(fd.get(), offset, use.length, std::max(granule, sys::huge_alignment(use.length)),
                               PROT_READ | PROT_WRITE, MAP_SHARED);
  if (!map) return fail(map.error().context(name));
  return make_contiguous_backend("dax", fmt::format("{} ({:#x}+{:#x}, write-back) at offset {:#x}", name, extent.start,
                                                    extent.size, offset),
                                 std::move(fd), std::move(*map), layout, offset);
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
