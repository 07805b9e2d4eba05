// x86-64 vCPUs: started directly in 64-bit long mode, with the CPUID KVM
// supports, so the guest sees its real physical-address width.
#pragma once

#include <cstdint>

#include "nvgrace/common/result.hpp"
#include "nvgrace/vm/kvm.hpp"

namespace nvgrace::vm::x86_64 {

// Where the vCPU starts: long mode, paging on with the page tables at `cr3`,
// a flat 64-bit code segment from the GDT at `gdt` (in guest memory).
struct LongModeStart {
  std::uint64_t cr3 = 0;
  std::uint64_t gdt = 0;
  std::uint16_t gdt_limit = 0;
  std::uint64_t rip = 0;
  std::uint64_t rsp = 0;
  std::uint64_t rdi = 0;  // first argument of the guest's entry point
};

[[nodiscard]] Result<void> start_long_mode(const Kvm& kvm, Vcpu& vcpu, const LongModeStart& start);

}  // namespace nvgrace::vm::x86_64
