// Where the device memory behind the fake BARs lives (nvgrace-model.md R19):
// the variant's memory source.
//
// A backend exposes usemem and resmem as mapped ranges in this process (for
// the read/write path) and as an fd plus file offset (what a VMM mmaps, or
// sends to a vfio-user client). Backends here:
//   memfd     (default) one sparse memfd holding usemem then resmem, like the
//             host's contiguous device memory; costs only touched pages.
//   file      a file path, e.g. on hugetlbfs; extended to the needed size.
// and on a real host (vfio/host/devmem.hpp): the physical range itself
// through /dev/mem.
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
#include "nvgrace/sys/fd.hpp"

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
// A backend whose usemem is [0, usemem length) of one mapped fd at
// `fd_base` and whose resmem follows it (R9: resmem follows usemem), as every
// backend here and /dev/mem lay them out. Takes the fd and the mapping.
[[nodiscard]] std::unique_ptr<MemoryBackend> make_contiguous_backend(std::string kind, std::string description,
                                                                    sys::UniqueFd fd, sys::Mapping map,
                                                                    const pciemu::Layout& layout,
                                                                    std::uint64_t fd_base);
// usemem + resmem, checked for overflow; an error for a layout without fake BARs.
[[nodiscard]] Result<std::uint64_t> backing_size(const pciemu::Layout& layout);

}  // namespace nvgrace::vfio
