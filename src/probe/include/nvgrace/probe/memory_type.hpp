// The memory-type probe (nvgrace-model.md R40): what a client's mapping of
// each fake BAR's memory behaves as. It maps the first page of every region
// with a sparse area (usemem's BAR4, resmem's BAR2) through the fd the
// device gives, exactly as a VMM does, and runs the accesses that Device
// memory refuses and Normal memory takes: unaligned loads and stores, and
// the architecture's block zeroing and atomics (arm64: DC ZVA, LDXR/STXR).
// The bytes it touches are put back as they were.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nvgrace/common/result.hpp"
#include "nvgrace/probe/probe.hpp"

namespace nvgrace::probe {

// Device memory faults on what the access's kind names (R40).
enum class AccessKind {
  aligned,    // allowed on every memory type: the mapping itself works
  unaligned,  // an alignment fault on Device memory, on every CPU and in QEMU's TCG
  other,      // DC ZVA, exclusives: architecture rules that emulators may not model
};

struct AccessOutcome {
  std::string name;  // "unaligned LDR", ...
  AccessKind kind = AccessKind::aligned;
  enum class Result { ok, faulted, wrong, not_applicable } result = Result::ok;
  std::string detail;  // what was wrong, or why it does not apply
};

struct RegionMemoryType {
  unsigned index = 0;
  std::string name;     // "region 4", or the mapped file and offset
  std::string skipped;  // why the region was not probed (not mappable, the map failed); else empty
  int map_errno = 0;    // the mmap's errno when it failed
  std::vector<AccessOutcome> accesses;

  enum class Verdict {
    normal,          // every access worked: Normal memory (R40)
    device,          // aligned accesses worked, unaligned ones faulted: Device memory
    faulting,        // even an aligned access faulted: no usable memory behind the mapping
    wrong,           // no fault, but an access left the wrong bytes
    other_faulted,   // unaligned accesses worked, the block zeroing or the atomics faulted
    skipped,
  };
  [[nodiscard]] Verdict verdict() const;
};

// Turns memory decode on first (a driver does; the 7.x kernel driver
// refuses the first access after a reset without it, R20). Errors only when
// the device cannot be asked at all.
[[nodiscard]] Result<std::vector<RegionMemoryType>> probe_memory_types(Target& target);

// The same accesses on one mapping of any file: `length` bytes at `offset`
// (a /dev/mem physical address, a device-DAX instance: the host-side routes
// to the GPU memory that R40 weighs). `length` is at least a page and the
// file's own mapping granule (device-DAX: its align).
[[nodiscard]] RegionMemoryType probe_mapping_memory_type(int fd, std::uint64_t offset, std::size_t length,
                                                         std::string name);

// One line per region: "memory-type region 4: <access> ok; ...: <verdict>".
[[nodiscard]] std::string format_memory_types(const std::vector<RegionMemoryType>& regions);

}  // namespace nvgrace::probe
