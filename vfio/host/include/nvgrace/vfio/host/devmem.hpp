// The host's GPU memory through /dev/mem: the memory source of the variant
// for a real device bound to plain vfio-pci (R16-R19, R26), where no driver
// owns the memory. Root only.
//
// On arm64 the kernel maps a physical range outside its linear map - Grace's
// GPU memory, which is not added to the host kernel - as Device-nGnRnE
// whatever the open flags (phys_mem_access_prot()), and KVM's stage 2 follows
// that mapping: such a mapping must never back a fake BAR there (R40).
#pragma once

#include <filesystem>
#include <memory>

#include "nvgrace/common/result.hpp"
#include "nvgrace/pciemu/layout.hpp"
#include "nvgrace/vfio/variant/memory.hpp"

namespace nvgrace::vfio::host {

// The host physical range of `layout` (usemem, then resmem) through `devmem`
// (normally /dev/mem), mapped shared and cacheable. Refused (EPERM, one line)
// where /dev/mem would give Device memory (R40, devmem_memory_type()),
// unless `allow_device_memory` - for tests that show what the guest then gets.
[[nodiscard]] Result<std::unique_ptr<MemoryBackend>> make_devmem_backend(const pciemu::Layout& layout,
                                                                        const std::filesystem::path& devmem,
                                                                        bool allow_device_memory = false);

}  // namespace nvgrace::vfio::host
