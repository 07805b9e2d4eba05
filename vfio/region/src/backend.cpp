#include "nvgrace/vfio/backend.hpp"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include <cerrno>
#include <cstring>
#include <string>

#include <fmt/format.h>

#include "nvgrace/common/checked.hpp"

namespace nvgrace::vfio {
namespace {

// Device memory [mem_base, mem_base + size) in one fd at `fd_base`, mapped once.
class ContiguousBackend final : public MemoryBackend {
 public:
  ContiguousBackend(std::string kind, std::string description, UniqueFd fd, Mapping map, const pciemu::Layout& layout,
                    std::uint64_t fd_base)
      : kind_(std::move(kind)), description_(std::move(description)), fd_(std::move(fd)), map_(std::move(map)),
        layout_(layout), fd_base_(fd_base) {}

  std::string_view kind() const override { return kind_; }
  std::string describe() const override { return description_; }

  std::optional<MemoryRange> range(pciemu::MemRole role) const override {
    const auto& m = role == pciemu::MemRole::usemem ? layout_.usemem : layout_.resmem;
    if (!m) return std::nullopt;
    const std::uint64_t off = m->host_base - layout_.usemem->host_base;  // resmem follows usemem (R9)
    return MemoryRange{map_.data() + off, m->length, fd_.get(), fd_base_ + off,
                       m->cacheable ? CacheMode::write_back : CacheMode::write_combined};
  }

 private:
  std::string kind_;
  std::string description_;
  UniqueFd fd_;
  Mapping map_;
  pciemu::Layout layout_;
  std::uint64_t fd_base_;
};

Result<std::uint64_t> total_size(const pciemu::Layout& layout) {
  if (layout.passthrough || !layout.usemem) return fail_errno(EINVAL, "the device has no fake BARs: nothing to back");
  std::uint64_t total = layout.usemem->length;
  if (layout.resmem) {
    auto t = checked_add(total, layout.resmem->length);
    if (!t) return fail_errno(EOVERFLOW, "device memory size overflows");
    total = *t;
  }
  return total;
}

}  // namespace

Result<std::unique_ptr<MemoryBackend>> make_memfd_backend(const pciemu::Layout& layout, std::string_view name) {
  auto size = total_size(layout);
  if (!size) return fail(size.error());
  UniqueFd fd(::memfd_create(std::string(name).c_str(), MFD_CLOEXEC));
  if (!fd) return fail_errno(errno, "memfd_create: {}", std::strerror(errno));
  if (::ftruncate(fd.get(), static_cast<off_t>(*size)) != 0)
    return fail_errno(errno, "sizing the memfd to {:#x} bytes: {}", *size, std::strerror(errno));
  auto map = Mapping::map(fd.get(), 0, *size, huge_alignment(*size), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE);
  if (!map) return fail(map.error().context("memfd backend"));
  return std::make_unique<ContiguousBackend>("memfd", fmt::format("memfd {} ({:#x} bytes, sparse)", name, *size),
                                             std::move(fd), std::move(*map), layout, 0);
}

Result<std::unique_ptr<MemoryBackend>> make_file_backend(const pciemu::Layout& layout, const std::filesystem::path& path) {
  auto size = total_size(layout);
  if (!size) return fail(size.error());
  // Never grow or overwrite a file that holds something else: only a new
  // file, an empty one, or a backing file of exactly the right size is used.
  std::string how = "created";
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd && errno == EEXIST) {
    fd = UniqueFd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    how = "existing";
  }
  if (!fd) return fail_errno(errno, "opening {}: {}", path.string(), std::strerror(errno));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return fail_errno(errno, "stat {}: {}", path.string(), std::strerror(errno));
  if (!S_ISREG(st.st_mode))
    return fail_errno(EINVAL, "{} is not a regular file; a backing file must be a new or regular file", path.string());
  struct statfs sfs {};
  std::uint64_t need = *size;
  if (::fstatfs(fd.get(), &sfs) == 0 && sfs.f_type == HUGETLBFS_MAGIC) {
    auto aligned = align_up(need, static_cast<std::uint64_t>(sfs.f_bsize));
    if (!aligned) return fail_errno(EOVERFLOW, "size overflows");
    need = *aligned;  // hugetlbfs files grow in whole huge pages
  }
  const auto have = static_cast<std::uint64_t>(st.st_size);
  if (how == "existing") {
    if (have == need)
      how = "existing backing file of the right size";
    else if (have == 0)
      how = "existing empty file, sized";
    else
      return fail_errno(EEXIST,
                        "{} already holds {} bytes and is not a {}-byte backing file: refusing to grow or "
                        "overwrite it (remove it, or give a new path)",
                        path.string(), have, need);
  }
  if (have != need && ::ftruncate(fd.get(), static_cast<off_t>(need)) != 0)
    return fail_errno(errno, "sizing {} to {:#x} bytes: {}", path.string(), need, std::strerror(errno));
  auto map = Mapping::map(fd.get(), 0, *size, huge_alignment(*size), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE);
  if (!map) return fail(map.error().context(path.string()));
  return std::make_unique<ContiguousBackend>("file", fmt::format("file {} ({})", path.string(), how), std::move(fd),
                                             std::move(*map), layout, 0);
}

Result<std::unique_ptr<MemoryBackend>> make_devmem_backend(const pciemu::Layout& layout,
                                                          const std::filesystem::path& devmem) {
  auto size = total_size(layout);
  if (!size) return fail(size.error());
  // No O_SYNC: the memory is cache-coherent (R19: usemem write-back), and on
  // x86 PAT refuses an uncached mapping of a range the kernel holds write-back.
  UniqueFd fd(::open(devmem.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd)
    return fail_errno(errno, "opening {}: {} (needs root, and a kernel that allows /dev/mem for this range)",
                      devmem.string(), std::strerror(errno));
  const std::uint64_t base = layout.usemem->host_base;
  auto map = Mapping::map(fd.get(), base, *size, huge_alignment(*size), PROT_READ | PROT_WRITE, MAP_SHARED);
  if (!map) return fail(map.error().context(devmem.string()));
  return std::make_unique<ContiguousBackend>("devmem", fmt::format("{} at {:#x}+{:#x}", devmem.string(), base, *size),
                                             std::move(fd), std::move(*map), layout, base);
}

}  // namespace nvgrace::vfio
