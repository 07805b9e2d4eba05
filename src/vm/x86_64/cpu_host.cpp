#include "vm/cpu_host.hpp"

namespace nvgrace::vm {

Result<CpuHostReport> check_cpu_on_host(const pciemu::cpu::ResolvedModel& model) {
  return fail_errno(ENOTSUP, "checking {} needs an arm64 KVM host, and this is x86_64 (the model table itself "
                             "prints anywhere: nvgrace cpu --model NAME)",
                    model.spec);
}

}  // namespace nvgrace::vm
