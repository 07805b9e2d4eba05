// arm64 vCPUs through the KVM API: the IPA size (R32), init with PSCI 0.2,
// core registers, SVE vector lengths and Z registers (R34), ID registers and
// the CPU model on them (R35, R36), the cacheable-PFNMAP query (R33). The
// model's arithmetic is nvgrace_cpu's (cpu/model.hpp); this applies it.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "nvgrace/common/result.hpp"
#include "nvgrace/cpu/model.hpp"
#include "nvgrace/vm/kvm.hpp"

namespace nvgrace::vm::aarch64 {

namespace cpu = nvgrace::cpu;

// The IPA width that covers [0, phys_needed): at least 32 bits (R32).
[[nodiscard]] unsigned ipa_bits_for(std::uint64_t phys_needed);

// KVM_GET/SET_ONE_REG ids of the core registers the runner sets.
[[nodiscard]] std::uint64_t reg_pc();
[[nodiscard]] std::uint64_t reg_x(unsigned n);
[[nodiscard]] std::uint64_t reg_pstate();
[[nodiscard]] Result<std::uint64_t> get_reg(const Vcpu& vcpu, std::uint64_t id);
[[nodiscard]] Result<void> set_reg(const Vcpu& vcpu, std::uint64_t id, std::uint64_t value);

// KVM_ARM_PREFERRED_TARGET, then KVM_ARM_VCPU_INIT with PSCI 0.2 (for
// SYSTEM_OFF) and, when `sve`, the SVE feature (then finalize_sve() before
// the first run).
[[nodiscard]] Result<void> init(const Kvm& kvm, const Vcpu& vcpu, bool sve);
[[nodiscard]] bool host_has_sve(const Kvm& kvm);

// SVE (R34): the vector-length set, written only before finalize.
[[nodiscard]] Result<cpu::SveVls> get_sve_vls(const Vcpu& vcpu);
[[nodiscard]] Result<void> set_sve_vls(const Vcpu& vcpu, const cpu::SveVls& vls);
[[nodiscard]] Result<void> finalize_sve(const Vcpu& vcpu);
// Slice 0 of Z register `n` (2048 bits; bytes past the vector length read 0).
[[nodiscard]] Result<std::array<std::uint8_t, 256>> get_zreg(const Vcpu& vcpu, unsigned n);
// The largest vector length in a set, in bytes (0: empty).
[[nodiscard]] unsigned max_vl_bytes(const cpu::SveVls& vls);
[[nodiscard]] std::string format_vls(const cpu::SveVls& vls);  // "128+256+512"

// KVM_CAP_ARM_WRITABLE_IMP_ID_REGS enabled on the VM (before any vCPU
// exists) makes MIDR_EL1 writable; false where the kernel does not have it.
[[nodiscard]] bool enable_writable_midr(const Kvm& kvm);

// What KVM offers this VM and vCPU: every ID register of the model table, the
// writable masks, the vector lengths where the vCPU has SVE (R36).
[[nodiscard]] Result<cpu::HostView> host_view(const Kvm& kvm, const Vcpu& vcpu, bool midr_writable, bool sve);

// The model on an initialised, not yet finalized vCPU: checked field by field
// (a refusal names every field that cannot be given), then the vector lengths
// written and SVE finalized, then the ID registers written (R34, R36).
struct AppliedModel {
  cpu::ResolvedModel model;
  cpu::HostView host;
  std::vector<cpu::FieldCheck> checks;
  std::map<std::string, std::uint64_t, std::less<>> written;  // register -> value written
  std::optional<cpu::SveVls> vls;  // the vector lengths the vCPU has
};
[[nodiscard]] Result<AppliedModel> apply_model(const Kvm& kvm, const Vcpu& vcpu, const cpu::ResolvedModel& model,
                                               bool midr_writable, bool sve);

// R33: what KVM says about mapping VM_PFNMAP memory (VFIO, /dev/mem)
// cacheable at stage 2, and what that means for usemem on a real host.
struct CacheablePfnmap {
  int answer = 0;        // KVM_CHECK_EXTENSION(243) on the VM fd; negative: errno
  std::string kernel;    // uname -r
  std::string meaning;   // one sentence
};
[[nodiscard]] CacheablePfnmap cacheable_pfnmap(const Kvm& kvm);

}  // namespace nvgrace::vm::aarch64
