#include "nvgrace/vm/cpu_host.hpp"

#include "nvgrace/vm/aarch64/vcpu.hpp"
#include "nvgrace/vm/kvm.hpp"

namespace nvgrace::vm {

Result<CpuHostReport> check_cpu_on_host(const cpu::ResolvedModel& model) {
  auto kvm = Kvm::open();
  if (!kvm) return fail(kvm.error());
  const bool midr_writable = model.midr ? aarch64::enable_writable_midr(*kvm) : false;
  auto vcpu = Vcpu::create(*kvm, 0);
  if (!vcpu) return fail(vcpu.error());
  const bool sve = aarch64::host_has_sve(*kvm);
  if (auto ok = aarch64::init(*kvm, *vcpu, sve); !ok) return fail(ok.error());
  auto view = aarch64::host_view(*kvm, *vcpu, midr_writable, sve);
  if (!view) return fail(view.error());
  CpuHostReport r;
  r.host = std::move(*view);
  r.checks = cpu::check_model(model, r.host);
  const auto pfnmap = aarch64::cacheable_pfnmap(*kvm);
  r.kernel = pfnmap.kernel;
  r.cacheable_pfnmap = pfnmap.answer;
  r.cacheable_pfnmap_meaning = pfnmap.meaning;
  return r;
}

Result<CacheablePfnmapReport> query_cacheable_pfnmap() {
  auto kvm = Kvm::open();
  if (!kvm) return fail(kvm.error());
  const auto c = aarch64::cacheable_pfnmap(*kvm);
  return CacheablePfnmapReport{c.answer, c.kernel, c.meaning};
}

}  // namespace nvgrace::vm
