#include "nvgrace/vfio/host/memory_type.hpp"

#include <fmt/format.h>

#include "nvgrace/common/kernel_release.hpp"

namespace nvgrace::vfio::host {

// arm64: /dev/mem maps a pfn the kernel does not hold in its linear map with
// pgprot_noncached(), Device-nGnRnE, whatever the open flags
// (arch/arm64/mm/mmu.c, phys_mem_access_prot()), and KVM builds stage 2 from
// that VMA: a non-cacheable VM_PFNMAP becomes Device memory there. The guest's
// driver onlines usemem as System RAM; unaligned accesses, DC ZVA (memset) and
// exclusives then fault or fail on it. The kernel's nvgrace-gpu maps usemem
// cacheable and resmem with pgprot_writecombine() (R19, R40).
const DevmemMemoryType& devmem_memory_type() {
  static constexpr DevmemMemoryType t{
      false, "Device-nGnRnE", "Device-nGnRnE",
      "arm64 /dev/mem maps memory outside the kernel's linear map as Device-nGnRnE (phys_mem_access_prot()), and KVM's "
      "stage 2 follows it: the guest's driver would fault on unaligned accesses and DC ZVA (memset) in usemem",
      "bind the GPU to the kernel's nvgrace-gpu (driver_override nvgrace_gpu_vfio_pci): serve --host then serves its "
      "own BAR2/BAR4, usemem cacheable and resmem write-combined"};
  return t;
}

// arm64 KVM before 6.17 decides a stage-2 mapping's type by the pfn alone:
// one outside the kernel's linear map is Device memory (kvm_is_device_pfn():
// !pfn_is_map_memory()), whatever the VMA - and device-DAX memory above the
// kernel's own (Grace's GPU memory, pmem) is such a pfn. 6.17 changed that,
// with the cacheable-PFNMAP query (R33): only a VM_PFNMAP/VM_MIXEDMAP VMA
// that is not cacheable gives Device, so the instance's write-back pages
// stay write-back. Measured in the arm64 host e2e's nested guest: Device on
// Debian's 6.12, Normal on 7.3.
DaxMemoryType dax_memory_type(std::string_view kernel_release) {
  const auto version = parse_kernel_release(kernel_release);
  if (!version)
    return {false, fmt::format("the kernel release '{}' is not MAJOR.MINOR...: cannot tell what KVM makes of device-DAX "
                               "memory at stage 2",
                               kernel_release),
            "run Linux 6.17 or later, or bind the GPU to the kernel's nvgrace-gpu"};
  if (version->at_least(6, 17)) return {true, "", ""};
  return {false,
          fmt::format("KVM in Linux {} (before 6.17) maps memory outside the kernel's linear map as Device memory at "
                      "stage 2 whatever the VMA (kvm_is_device_pfn()), device-DAX memory included: the guest's driver "
                      "would fault on unaligned accesses and DC ZVA (memset) in usemem",
                      kernel_release),
          "run Linux 6.17 or later (its KVM keeps the instance's write-back), or bind the GPU to the kernel's "
          "nvgrace-gpu"};
}

}  // namespace nvgrace::vfio::host
