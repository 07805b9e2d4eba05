#include "nvgrace/vm/aarch64/vcpu.hpp"

#include <sys/ioctl.h>
#include <sys/utsname.h>

#include <bit>
#include <cerrno>
#include <cstddef>
#include <cstring>

#include <fmt/format.h>

#include "nvgrace/common/kernel_release.hpp"
#include "nvgrace/vm/aarch64/uapi.hpp"

namespace nvgrace::vm {

namespace aarch64 {
namespace {

constexpr std::uint64_t kCoreU64 = KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE;
constexpr std::uint64_t kSysregU64 = KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM64_SYSREG;
constexpr std::uint64_t sysreg(unsigned op0, unsigned op1, unsigned crn, unsigned crm, unsigned op2) {
  return kSysregU64 | std::uint64_t{op0} << 14 | std::uint64_t{op1} << 11 | std::uint64_t{crn} << 7 |
         std::uint64_t{crm} << 3 | op2;
}

Result<void> one_reg(const Vcpu& vcpu, unsigned long request, std::uint64_t id, void* buf, const char* what) {
  kvm_one_reg r{id, reinterpret_cast<std::uint64_t>(buf)};
  if (::ioctl(vcpu.fd(), request, &r) != 0)
    return fail_errno(errno, "{}({:#x}): {}", what, id, std::strerror(errno));
  return {};
}

}  // namespace

unsigned ipa_bits_for(std::uint64_t phys_needed) {
  unsigned bits = 32;
  while (bits < 64 && (std::uint64_t{1} << bits) < phys_needed) ++bits;
  return bits;
}

std::uint64_t reg_pc() { return kCoreU64 | KVM_REG_ARM_CORE_REG(regs.pc); }
std::uint64_t reg_pstate() { return kCoreU64 | KVM_REG_ARM_CORE_REG(regs.pstate); }
std::uint64_t reg_x(unsigned n) { return kCoreU64 | (KVM_REG_ARM_CORE_REG(regs.regs[0]) + 2 * n); }

Result<std::uint64_t> get_reg(const Vcpu& vcpu, std::uint64_t id) {
  std::uint64_t v = 0;
  if (auto ok = one_reg(vcpu, KVM_GET_ONE_REG, id, &v, "KVM_GET_ONE_REG"); !ok) return fail(ok.error());
  return v;
}

Result<void> set_reg(const Vcpu& vcpu, std::uint64_t id, std::uint64_t value) {
  return one_reg(vcpu, KVM_SET_ONE_REG, id, &value, "KVM_SET_ONE_REG");
}

bool host_has_sve(const Kvm& kvm) { return kvm.check_extension(uapi::kCapArmSve) > 0; }

Result<void> init(const Kvm& kvm, const Vcpu& vcpu, bool sve) {
  if (kvm.check_extension(uapi::kCapArmPsci02) <= 0)
    return fail_errno(ENOTSUP, "this KVM has no PSCI 0.2 (KVM_CAP_ARM_PSCI_0_2), which the guest powers off with");
  kvm_vcpu_init init{};
  if (::ioctl(kvm.vm_fd(), KVM_ARM_PREFERRED_TARGET, &init) != 0)
    return fail_errno(errno, "KVM_ARM_PREFERRED_TARGET: {}", std::strerror(errno));
  init.features[0] |= 1u << KVM_ARM_VCPU_PSCI_0_2;
  if (sve) init.features[0] |= 1u << KVM_ARM_VCPU_SVE;
  if (::ioctl(vcpu.fd(), KVM_ARM_VCPU_INIT, &init) != 0)
    return fail_errno(errno, "KVM_ARM_VCPU_INIT (target {}, PSCI 0.2{}): {}", init.target, sve ? ", SVE" : "",
                      std::strerror(errno));
  return {};
}

Result<cpu::SveVls> get_sve_vls(const Vcpu& vcpu) {
  cpu::SveVls vls{};
  if (auto ok = one_reg(vcpu, KVM_GET_ONE_REG, KVM_REG_ARM64_SVE_VLS, vls.data(), "KVM_GET_ONE_REG(SVE_VLS)"); !ok)
    return fail(ok.error());
  return vls;
}

Result<void> set_sve_vls(const Vcpu& vcpu, const cpu::SveVls& vls) {
  auto copy = vls;
  return one_reg(vcpu, KVM_SET_ONE_REG, KVM_REG_ARM64_SVE_VLS, copy.data(), "KVM_SET_ONE_REG(SVE_VLS)");
}

Result<void> finalize_sve(const Vcpu& vcpu) {
  int what = KVM_ARM_VCPU_SVE;
  if (::ioctl(vcpu.fd(), KVM_ARM_VCPU_FINALIZE, &what) != 0)
    return fail_errno(errno, "KVM_ARM_VCPU_FINALIZE(SVE): {}", std::strerror(errno));
  return {};
}

Result<std::array<std::uint8_t, 256>> get_zreg(const Vcpu& vcpu, unsigned n) {
  std::array<std::uint8_t, 256> z{};
  if (auto ok = one_reg(vcpu, KVM_GET_ONE_REG, KVM_REG_ARM64_SVE_ZREG(n, 0), z.data(), "KVM_GET_ONE_REG(Z)"); !ok)
    return fail(ok.error());
  return z;
}

unsigned max_vl_bytes(const cpu::SveVls& vls) {
  for (auto w = static_cast<unsigned>(vls.size()); w-- > 0;)
    if (vls[w]) return (w * 64 + (63 - static_cast<unsigned>(std::countl_zero(vls[w]))) + 1) * 16;
  return 0;
}

std::string format_vls(const cpu::SveVls& vls) {
  std::string s;
  for (unsigned vq = 1; vq <= vls.size() * 64; ++vq)
    if (vls[(vq - 1) / 64] >> ((vq - 1) % 64) & 1) s += fmt::format("{}{}", s.empty() ? "" : "+", vq * 128);
  return s.empty() ? "none" : s;
}

bool enable_writable_midr(const Kvm& kvm) {
  if (kvm.check_vm_extension(uapi::kCapArmWritableImpIdRegs) <= 0) return false;
  kvm_enable_cap cap{};
  cap.cap = static_cast<std::uint32_t>(uapi::kCapArmWritableImpIdRegs);
  return ::ioctl(kvm.vm_fd(), KVM_ENABLE_CAP, &cap) == 0;
}

Result<cpu::HostView> host_view(const Kvm& kvm, const Vcpu& vcpu, bool midr_writable, bool sve) {
  cpu::HostView v;
  for (const auto& reg : cpu::id_registers()) {
    auto value = get_reg(vcpu, reg.kvm_reg_id());
    if (value) v.values.emplace(std::string(reg.name), *value);
    else if (value.error().err != ENOENT) return fail(value.error().context(reg.name));
    // ENOENT: a register this kernel does not know; the model check treats it as 0, as KVM reads it.
  }
  if (kvm.check_vm_extension(uapi::kCapArmSupportedRegMaskRanges) & (1 << uapi::kFeatureIdRange)) {
    std::array<std::uint64_t, uapi::kFeatureIdRangeSize> masks{};
    uapi::RegMaskRange r{};
    r.addr = reinterpret_cast<std::uint64_t>(masks.data());
    r.range = uapi::kFeatureIdRange;
    if (::ioctl(kvm.vm_fd(), uapi::kGetRegWritableMasks, &r) != 0)
      return fail_errno(errno, "KVM_ARM_GET_REG_WRITABLE_MASKS: {}", std::strerror(errno));
    v.writable = masks;
  }
  v.midr_writable = midr_writable;
  if (sve) {
    auto vls = get_sve_vls(vcpu);
    if (!vls) return fail(vls.error());
    v.sve = *vls;
  }
  return v;
}

Result<AppliedModel> apply_model(const Kvm& kvm, const Vcpu& vcpu, const cpu::ResolvedModel& model,
                                 bool midr_writable, bool sve) {
  AppliedModel a;
  a.model = model;
  auto view = host_view(kvm, vcpu, midr_writable, sve);
  if (!view) return fail(view.error());
  a.host = std::move(*view);
  a.checks = cpu::check_model(model, a.host);
  std::string refused;
  for (const auto& c : a.checks)
    if (!c.ok())
      refused += fmt::format("{}{}", refused.empty() ? "" : "; ", c.why);  // `why` names the register and field
  if (!refused.empty()) return fail_errno(EINVAL, "--cpu {}: this host cannot run it (R36): {}", model.spec, refused);
  if (sve) {
    if (model.sve)
      if (auto ok = set_sve_vls(vcpu, *model.sve); !ok) return fail(ok.error());
    if (auto ok = finalize_sve(vcpu); !ok) return fail(ok.error());
    auto vls = get_sve_vls(vcpu);
    if (!vls) return fail(vls.error());
    a.vls = *vls;
  }
  for (const auto& [name, value] : cpu::register_values(model, a.host)) {
    const auto* reg = cpu::find_register(name);
    if (!reg) return fail_errno(EINVAL, "the CPU model names an unknown register {}", name);
    if (auto ok = set_reg(vcpu, reg->kvm_reg_id(), value); !ok)
      return fail(ok.error().context(fmt::format("--cpu {}: writing {} = {:#x}", model.spec, name, value)));
    a.written.emplace(name, value);
  }
  return a;
}

CacheablePfnmap cacheable_pfnmap(const Kvm& kvm) {
  CacheablePfnmap c;
  c.answer = kvm.check_vm_extension(uapi::kCapArmCacheablePfnmapSupported);
  utsname u{};
  ::uname(&u);
  c.kernel = u.release;
  const auto version = parse_kernel_release(c.kernel);
  const bool knows = version && version->at_least(6, 17);
  if (c.answer > 0)
    c.meaning = "KVM maps VM_PFNMAP memory cacheable at stage 2 (FWB and DIC): on a Grace host usemem from VFIO "
                "or /dev/mem reaches the guest write-back, as its driver maps it";
  else if (c.answer < 0)
    c.meaning = fmt::format("the query failed: {}", std::strerror(-c.answer));
  else if (knows)
    c.meaning = "this host cannot map VM_PFNMAP memory cacheable (no FWB or no DIC): KVM refuses a memslot over a "
                "cacheable VFIO mapping of usemem; only non-cacheable mappings work";
  else
    c.meaning = fmt::format("Linux {} predates the query (6.17): it maps VM_PFNMAP memory (VFIO, /dev/mem) Device "
                            "or Normal-NC at stage 2, so usemem from a real Grace GPU would reach the guest "
                            "uncached; the emulated GPUs here are ordinary memory, mapped write-back",
                            c.kernel);
  return c;
}

}  // namespace aarch64

Result<VmShape> vm_shape(int kvm_fd, std::uint64_t phys_needed) {
  VmShape s;
  const int limit = ::ioctl(kvm_fd, KVM_CHECK_EXTENSION, aarch64::uapi::kCapArmVmIpaSize);
  // 0: a kernel without IPA sizing gives the default 40 bits only.
  s.host_limit_bits = limit > 0 ? static_cast<unsigned>(limit) : 40;
  const unsigned want = phys_needed ? aarch64::ipa_bits_for(phys_needed) : 40;
  if (want > s.host_limit_bits)
    return fail_errno(ERANGE, "the guest needs a {}-bit IPA space (addresses up to {:#x}) but this host's KVM gives "
                              "at most {} bits (R32)",
                      want, phys_needed - 1, s.host_limit_bits);
  s.phys_bits = limit > 0 ? want : 40;
  s.type = limit > 0 ? KVM_VM_TYPE_ARM_IPA_SIZE(s.phys_bits) : 0;
  return s;
}

std::string Vcpu::register_dump() const {
  std::string out;
  auto show = [&](const char* name, std::uint64_t id) {
    auto v = aarch64::get_reg(*this, id);
    out += v ? fmt::format("{}={:#018x} ", name, *v) : fmt::format("{}=? ", name);
  };
  show("pc", aarch64::reg_pc());
  show("pstate", aarch64::reg_pstate());
  for (unsigned n = 0; n < 6; ++n) show(fmt::format("x{}", n).c_str(), aarch64::reg_x(n));
  show("elr_el1", aarch64::kCoreU64 | KVM_REG_ARM_CORE_REG(elr_el1));
  show("esr_el1", aarch64::sysreg(3, 0, 5, 2, 0));
  show("far_el1", aarch64::sysreg(3, 0, 6, 0, 0));
  show("sctlr_el1", aarch64::sysreg(3, 0, 1, 0, 0));
  return out;
}

}  // namespace nvgrace::vm
