// Where the device memory behind the fake BARs lives (nvgrace-model.md R19).
//
// A backend exposes usemem and resmem as mapped ranges in this process (for
// the read/write path) and as an fd plus file offset (what a VMM mmaps, or
// sends to a vfio-user client). Backends:
//   memfd     (default) one sparse memfd holding usemem then resmem, like the
//             host's contiguous device memory; costs only touched pages.
//   file      a file path, e.g. on hugetlbfs; extended to the needed size.
//   devmem    the physical range itself through /dev/mem, for hosts without
//             the kernel driver. Root only; on arm64 /dev/mem maps are
//             uncached (Device memory), so this is for inspection, not speed.
//   host-vfio a GPU bound to the kernel nvgrace-gpu driver (see host/host_vfio.hpp).
//
// Thread-safety: the ranges may be read and written from any thread; the
// backend object itself is immutable after creation.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "nvgrace/common/result.hpp"
#include "nvgrace/pciemu/layout.hpp"
#include "nvgrace/vfio/fd.hpp"

namespace nvgrace::vfio {

// R19: what the VMM must request when it maps the range.
enum class CacheMode { write_back, write_combined };

[[nodiscard]] constexpr std::string_view to_string(CacheMode c) {
  return c == CacheMode::write_back ? "write-back" : "write-combined";
}

struct MemoryRange {
  std::uint8_t* data = nullptr;  // mapped in this process
  std::uint64_t size = 0;        // == the region's memory length
  int fd = -1;                   // what to mmap for a VMM
  std::uint64_t fd_offset = 0;
  CacheMode cache = CacheMode::write_back;
};

class MemoryBackend {
 public:
  virtual ~MemoryBackend() = default;
  [[nodiscard]] virtual std::string_view kind() const = 0;
  // One line for a person: what backs the memory and, for a file, whether it
  // was created or reused.
  [[nodiscard]] virtual std::string describe() const { return std::string(kind()); }
  // nullopt when the layout has no such region (no resmem without the MIG bug).
  [[nodiscard]] virtual std::optional<MemoryRange> range(pciemu::MemRole role) const = 0;
};

// The default: a memfd of mem_size bytes, sparse. `name` shows in /proc/*/maps.
[[nodiscard]] Result<std::unique_ptr<MemoryBackend>> make_memfd_backend(const pciemu::Layout& layout,
                                                                        std::string_view name);
// A file: created if missing; an existing file only when it is empty or
// already exactly the backing size (hugetlbfs sizes are rounded up to its page
// size). Any other existing file is refused with EEXIST: nvgrace never grows
// or overwrites a file that holds something else. describe() says which.
[[nodiscard]] Result<std::unique_ptr<MemoryBackend>> make_file_backend(const pciemu::Layout& layout,
                                                                      const std::filesystem::path& path);
// The host physical range itself, through `devmem` (normally /dev/mem).
[[nodiscard]] Result<std::unique_ptr<MemoryBackend>> make_devmem_backend(const pciemu::Layout& layout,
                                                                        const std::filesystem::path& devmem);

}  // namespace nvgrace::vfio
