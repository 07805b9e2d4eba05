#include "nvgrace/vfio/host/devmem.hpp"

#include <fcntl.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "nvgrace/vfio/host/memory_type.hpp"

namespace nvgrace::vfio::host {

Result<std::unique_ptr<MemoryBackend>> make_devmem_backend(const pciemu::Layout& layout,
                                                          const std::filesystem::path& devmem,
                                                          bool allow_device_memory) {
  auto size = backing_size(layout);
  if (!size) return fail(size.error());
  // R40: never Device memory behind a fake BAR.
  if (const auto& type = devmem_memory_type(); !type.usable && !allow_device_memory)
    return fail_errno(EPERM, "refusing to back the fake BARs with {}: {}; instead, {}", devmem.string(), type.why,
                      type.instead);
  // No O_SYNC: the memory is cache-coherent (R19: usemem write-back), and on
  // x86 PAT refuses an uncached mapping of a range the kernel holds write-back.
  sys::UniqueFd fd(::open(devmem.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd)
    return fail_errno(errno, "opening {}: {} (needs root, and a kernel that allows /dev/mem for this range)",
                      devmem.string(), std::strerror(errno));
  const std::uint64_t base = layout.usemem->host_base;
  auto map = sys::Mapping::map(fd.get(), base, *size, sys::huge_alignment(*size), PROT_READ | PROT_WRITE, MAP_SHARED);
  if (!map) return fail(map.error().context(devmem.string()));
  return make_contiguous_backend("devmem", fmt::format("{} at {:#x}+{:#x}", devmem.string(), base, *size), std::move(fd),
                                 std::move(*map), layout, base);
}

}  // namespace nvgrace::vfio::host
