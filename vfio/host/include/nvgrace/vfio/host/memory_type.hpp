// The memory type a /dev/mem mapping of the GPU's memory gets on the
// architecture this tree is built for (R40), and with it whether such a
// mapping may back a fake BAR: the guest must see usemem as Normal
// write-back and resmem as Normal non-cacheable (R19, R33), never Device
// memory. Each architecture answers in its own file (src/<arch>/).
#pragma once

#include <string_view>

namespace nvgrace::vfio::host {

struct DevmemMemoryType {
  bool usable = false;        // Normal memory: may back the fake BARs
  std::string_view usemem;    // the type usemem gets through /dev/mem
  std::string_view resmem;    // the type resmem gets through /dev/mem
  std::string_view why;       // the kernel's rule that decides it
  std::string_view instead;   // what gives the right types where this does not
};

// For a range outside the kernel's linear map (Grace's GPU memory when no
// driver owns it, or memory kept from the kernel with memmap=/no-map).
[[nodiscard]] const DevmemMemoryType& devmem_memory_type();

}  // namespace nvgrace::vfio::host
