// The memory type a /dev/mem mapping of the GPU's memory gets on the
// architecture this tree is built for (R40), and with it whether such a
// mapping may back a fake BAR: the guest must see usemem as Normal
// write-back and resmem as Normal non-cacheable (R19, R33), never Device
// memory. Each architecture answers in its own file (src/<arch>/).
#pragma once

#include <string>
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

// A device-DAX instance's memory (--host-memory): ordinary pages the VMM maps
// write-back, but what KVM makes of them at stage 2 depends on the kernel,
// named by its release as uname gives it ("6.12.117+deb13-cloud-arm64").
struct DaxMemoryType {
  bool usable = false;  // Normal write-back in a KVM guest: may back usemem
  std::string why;      // when not: the kernel's rule that decides it
  std::string instead;  // what gives the right type
};
[[nodiscard]] DaxMemoryType dax_memory_type(std::string_view kernel_release);

// The running kernel's release (uname -r).
[[nodiscard]] std::string running_kernel_release();

}  // namespace nvgrace::vfio::host
