// Can this host run a CPU model, and what would the guest see (R36)? Asked of
// a scratch VM and vCPU, which never run. Only an arm64 KVM host can answer
// (aarch64/cpu_host.cpp); elsewhere the answer is an error saying so
// (x86_64/cpu_host.cpp), and the model table itself needs no host.
#pragma once

#include <string>
#include <vector>

#include "nvgrace/common/result.hpp"
#include "nvgrace/cpu/model.hpp"

namespace nvgrace::vm {

struct CpuHostReport {
  std::string kernel;                             // uname -r
  std::vector<cpu::FieldCheck> checks;    // every field, MIDR and vector length the model sets
  cpu::HostView host;                     // every ID register, the writable masks, the vector lengths
  int cacheable_pfnmap = 0;                       // R33: KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED on the VM
  std::string cacheable_pfnmap_meaning;
};
[[nodiscard]] Result<CpuHostReport> check_cpu_on_host(const cpu::ResolvedModel& model);

// R33, asked of a scratch VM: can KVM map VM_PFNMAP memory (VFIO, /dev/mem)
// cacheable at stage 2, and what that means for usemem. arm64 only: the
// error elsewhere has err == ENOTSUP.
struct CacheablePfnmapReport {
  int answer = 0;  // KVM_CHECK_EXTENSION(KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED) on the VM fd
  std::string kernel;
  std::string meaning;
};
[[nodiscard]] Result<CacheablePfnmapReport> query_cacheable_pfnmap();

}  // namespace nvgrace::vm
