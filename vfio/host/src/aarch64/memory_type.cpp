#include "nvgrace/vfio/host/memory_type.hpp"

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

}  // namespace nvgrace::vfio::host
