#include "nvgrace/vm/cpu_host.hpp"

namespace nvgrace::vm {

Result<CpuHostReport> check_cpu_on_host(const cpu::ResolvedModel& model) {
  return fail_errno(ENOTSUP, "checking {} needs an arm64 KVM host, and this is x86_64 (the model table itself "
                             "prints anywhere: nvgrace cpu --model NAME)",
                    model.spec);
}

Result<CacheablePfnmapReport> query_cacheable_pfnmap() {
  return fail_errno(ENOTSUP, "cacheable PFNMAP at stage 2 is an arm64 KVM question (R33); this is x86_64");
}

}  // namespace nvgrace::vm
