#include "nvgrace/sys/memfd.hpp"

#include <sys/eventfd.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace nvgrace::sys {

Result<UniqueFd> make_memfd(std::string_view name, std::uint64_t size) {
  UniqueFd fd(::memfd_create(std::string(name).c_str(), MFD_CLOEXEC));
  if (!fd) return fail_errno(errno, "memfd_create {}: {}", name, std::strerror(errno));
  if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0)
    return fail_errno(errno, "sizing the memfd {} to {:#x} bytes: {}", name, size, std::strerror(errno));
  return fd;
}

Result<UniqueFd> make_eventfd(bool nonblock) {
  UniqueFd fd(::eventfd(0, EFD_CLOEXEC | (nonblock ? EFD_NONBLOCK : 0)));
  if (!fd) return fail_errno(errno, "eventfd: {}", std::strerror(errno));
  return fd;
}

}  // namespace nvgrace::sys
