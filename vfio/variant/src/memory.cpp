#include "nvgrace/vfio/variant/memory.hpp"

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
#include "nvgrace/sys/memfd.hpp"

namespace nvgrace::vfio {
namespace {

// Device memory [mem_base, mem_base + size) in one fd at `fd_base`, mapped once.
class ContiguousBackend final : public MemoryBackend {
 public:
  ContiguousBackend(std::string kind, std::string description, sys::UniqueFd fd, sys::Mapping map, const pciemu::Layout& layout,
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
  sys::UniqueFd fd_;
  sys::Mapping map_;
  pciemu::Layout layout_;
  std::uint64_t fd_base_;
};

}  // namespace

Result<std::uint64_t> backing_size(const pciemu::Layout& layout) {
  if (layout.passthrough || !layout.usemem) return fail_errno(EINVAL, "the device has no fake BARs: nothing to back");
  std::uint64_t total = layout.usemem->length;
  if (layout.resmem) {
    auto t = checked_add(total, layout.resmem->length);
    if (!t) return fail_errno(EOVERFLOW, "device memory size overflows");
    total = *t;
  }
  return total;
}

std::unique_ptr<MemoryBackend> make_contiguous_backend(std::string kind, std::string description, sys::UniqueFd fd,
                                                       sys::Mapping map, const pciemu::Layout& layout,
                                                       std::uint64_t fd_base) {
  return std::make_unique<ContiguousBackend>(std::move(kind), std::move(description), std::move(fd), std::move(map),
                                             layout, fd_base);
}

Result<std::unique_ptr<MemoryBackend>> make_memfd_backend(const pciemu::Layout& layout, std::string_view name) {
  auto size = backing_size(layout);
  if (!size) return fail(size.error());
  auto fd = sys::make_memfd(name, *size);
  if (!fd) return fail(fd.error());
  auto map = sys::Mapping::map(fd->get(), 0, *size, sys::huge_alignment(*size), PROT_READ | PROT_WRITE,
                               MAP_SHARED | MAP_NORESERVE);
  if (!map) return fail(map.error().context("memfd backend"));
  return make_contiguous_backend("memfd", fmt::format("memfd {} ({:#x} bytes, sparse)", name, *size), std::move(*fd),
                                 std::move(*map), layout, 0);
}

Result<std::unique_ptr<MemoryBackend>> make_file_backend(const pciemu::Layout& layout, const std::filesystem::path& path) {
  auto size = backing_size(layout);
  if (!size) return fail(size.error());
  // Never grow or overwrite a file that holds something else: only a new
  // file, an empty one, or a backing file of exactly the right size is used.
  std::string how = "created";
  sys::UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd && errno == EEXIST) {
    fd = sys::UniqueFd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
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
  auto map = sys::Mapping::map(fd.get(), 0, *size, sys::huge_alignment(*size), PROT_READ | PROT_WRITE,
                               MAP_SHARED | MAP_NORESERVE);
  if (!map) return fail(map.error().context(path.string()));
  return make_contiguous_backend("file", fmt::format("file {} ({})", path.string(), how), std::move(fd), std::move(*map),
                                 layout, 0);
}

}  // namespace nvgrace::vfio
