#include "nvgrace/sys/fd.hpp"
#include "nvgrace/sys/fd_table.hpp"

#include <fcntl.h>

#include <cerrno>
#include <cstring>

#include "nvgrace/common/checked.hpp"

namespace nvgrace::sys {

Result<UniqueFd> duplicate(int fd) {
  const int d = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (d < 0) return fail_errno(errno, "duplicating fd {}: {}", fd, std::strerror(errno));
  return UniqueFd(d);
}

std::uint64_t page_size() { return static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE)); }

std::uint64_t huge_alignment(std::uint64_t size) {
  const std::uint64_t page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  auto p2 = next_pow2(size);
  std::uint64_t a = p2 ? std::min(*p2, GiB) : GiB;
  return std::max(a, page);
}

Result<Mapping> Mapping::map(int fd, std::uint64_t fd_offset, std::uint64_t length, std::uint64_t align, int prot,
                             int flags) {
  if (length == 0) return fail_errno(EINVAL, "mapping of 0 bytes");
  if (!is_pow2(align)) return fail_errno(EINVAL, "alignment {:#x} is not a power of two", align);
  auto reserve = checked_add(length, align);
  if (!reserve) return fail_errno(EOVERFLOW, "mapping of {:#x} bytes aligned to {:#x} overflows", length, align);
  void* base = ::mmap(nullptr, *reserve, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED)
    return fail_errno(errno, "reserving {:#x} bytes of address space: {}", *reserve, std::strerror(errno));
  const auto start = align_up(reinterpret_cast<std::uintptr_t>(base), align).value();
  const int map_flags = flags | MAP_FIXED | (fd < 0 ? MAP_ANONYMOUS : 0);
  void* p = ::mmap(reinterpret_cast<void*>(start), length, prot, map_flags, fd, static_cast<off_t>(fd_offset));
  if (p == MAP_FAILED) {
    const int e = errno;
    ::munmap(base, *reserve);
    return fail_errno(e, "mapping {:#x} bytes at fd offset {:#x}: {}", length, fd_offset, std::strerror(e));
  }
  // Give back the unaligned head and the tail of the reservation. The kernel
  // maps whole pages, so the mapping ends at the first page boundary at or
  // past `length` (the system's page size: 64 KiB on many Grace hosts), and
  // the tail starts there: munmap refuses an address inside a page.
  const auto b = reinterpret_cast<std::uintptr_t>(base);
  if (start > b) ::munmap(base, start - b);
  const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  const std::uintptr_t end = align_up(start + length, page).value();
  const std::uintptr_t rend = align_up(b + *reserve, page).value();
  if (rend > end) ::munmap(reinterpret_cast<void*>(end), rend - end);
  Mapping m;
  m.base_ = reinterpret_cast<void*>(start);
  m.reserved_ = end - start;
  m.data_ = reinterpret_cast<std::uint8_t*>(start);
  m.length_ = length;
  return m;
}

void Mapping::reset() {
  if (base_) ::munmap(base_, reserved_);
  base_ = nullptr;
  data_ = nullptr;
  reserved_ = 0;
  length_ = 0;
}

}  // namespace nvgrace::sys

namespace nvgrace::sys {

Result<UniqueFd> FdTable::take(std::uint64_t index) {
  if (index >= owned_.size())
    return fail_errno(EBADF, "hand-over names descriptor {}, but {} came", index, owned_.size());
  if (!owned_[index]) return fail_errno(EBADF, "hand-over names descriptor {} twice", index);
  return std::move(owned_[index]);
}

std::size_t FdTable::untaken() const {
  std::size_t n = 0;
  for (const auto& f : owned_) n += f ? 1u : 0u;
  return n;
}

}  // namespace nvgrace::sys
