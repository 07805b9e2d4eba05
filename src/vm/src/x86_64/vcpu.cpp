#include "nvgrace/vm/x86_64/vcpu.hpp"

#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include <fmt/format.h>

namespace nvgrace::vm {
namespace {

constexpr std::uint64_t kCr0Pe = 1u << 0, kCr0Mp = 1u << 1, kCr0Et = 1u << 4, kCr0Ne = 1u << 5, kCr0Wp = 1u << 16,
                        kCr0Pg = 1ull << 31;
constexpr std::uint64_t kCr4Pae = 1u << 5, kCr4Osfxsr = 1u << 9, kCr4Osxmmexcpt = 1u << 10;
constexpr std::uint64_t kEferLme = 1u << 8, kEferLma = 1u << 10;
constexpr std::uint32_t kMsrMtrrDefType = 0x2FF;  // IA32_MTRR_DEF_TYPE (Intel SDM vol. 3, 12.11.2.1)
constexpr std::uint64_t kMtrrEnable = 1u << 11, kMtrrTypeWriteBack = 6;
constexpr std::uint32_t kMaxCpuidEntries = 256;

// KVM_GET_SUPPORTED_CPUID into a buffer sized for kMaxCpuidEntries.
Result<std::vector<std::uint8_t>> supported_cpuid(int kvm_fd) {
  std::vector<std::uint8_t> buf(sizeof(kvm_cpuid2) + kMaxCpuidEntries * sizeof(kvm_cpuid_entry2));
  auto* cpuid = reinterpret_cast<kvm_cpuid2*>(buf.data());
  cpuid->nent = kMaxCpuidEntries;
  if (::ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, cpuid) != 0)
    return fail_errno(errno, "KVM_GET_SUPPORTED_CPUID: {}", std::strerror(errno));
  return buf;
}

}  // namespace

Result<VmShape> vm_shape(int kvm_fd, std::uint64_t phys_needed) {
  VmShape s;
  s.phys_bits = 36;  // the architectural minimum when CPUID does not say
  auto buf = supported_cpuid(kvm_fd);
  if (!buf) return fail(buf.error());
  const auto* cpuid = reinterpret_cast<const kvm_cpuid2*>(buf->data());
  for (std::uint32_t i = 0; i < cpuid->nent; ++i)
    if (cpuid->entries[i].function == 0x80000008) s.phys_bits = cpuid->entries[i].eax & 0xFF;
  s.host_limit_bits = s.phys_bits;
  if (s.phys_bits < 64 && phys_needed > (std::uint64_t{1} << s.phys_bits))
    return fail_errno(ERANGE, "the guest needs physical addresses up to {:#x}, but this host's CPUs give {} bits",
                      phys_needed - 1, s.phys_bits);
  return s;
}

namespace x86_64 {

Result<void> start_long_mode(const Kvm& kvm, Vcpu& vcpu, const LongModeStart& start) {
  const int fd = vcpu.fd();
  auto buf = supported_cpuid(kvm.kvm_fd());
  if (!buf) return fail(buf.error());
  if (::ioctl(fd, KVM_SET_CPUID2, buf->data()) != 0) return fail_errno(errno, "KVM_SET_CPUID2: {}", std::strerror(errno));

  kvm_sregs s{};
  if (::ioctl(fd, KVM_GET_SREGS, &s) != 0) return fail_errno(errno, "KVM_GET_SREGS: {}", std::strerror(errno));
  kvm_segment code{};
  code.base = 0;
  code.limit = 0xFFFFFFFF;
  code.selector = 0x08;
  code.type = 11;  // execute/read, accessed
  code.present = 1;
  code.s = 1;
  code.l = 1;  // 64-bit
  code.g = 1;
  kvm_segment data = code;
  data.selector = 0x10;
  data.type = 3;  // read/write, accessed
  data.l = 0;
  data.db = 1;
  s.cs = code;
  s.ds = s.es = s.fs = s.gs = s.ss = data;
  s.gdt.base = start.gdt;
  s.gdt.limit = start.gdt_limit;
  s.cr3 = start.cr3;
  s.cr4 = kCr4Pae | kCr4Osfxsr | kCr4Osxmmexcpt;
  s.cr0 = kCr0Pe | kCr0Mp | kCr0Et | kCr0Ne | kCr0Wp | kCr0Pg;
  s.efer = kEferLme | kEferLma;
  if (::ioctl(fd, KVM_SET_SREGS, &s) != 0) return fail_errno(errno, "KVM_SET_SREGS: {}", std::strerror(errno));
  // Firmware enables the MTRRs with write-back as the default type; without
  // it guest memory is uncached (the MTRRs' reset state).
  struct {
    kvm_msrs head;
    kvm_msr_entry entry[1];
  } msrs{};
  msrs.head.nmsrs = 1;
  msrs.entry[0].index = kMsrMtrrDefType;
  msrs.entry[0].data = kMtrrEnable | kMtrrTypeWriteBack;
  if (::ioctl(fd, KVM_SET_MSRS, &msrs) != 1) return fail_errno(errno, "KVM_SET_MSRS(MTRRdefType): {}", std::strerror(errno));
  kvm_regs r{};
  r.rip = start.rip;
  r.rsp = start.rsp;
  r.rdi = start.rdi;
  r.rflags = 0x2;
  if (::ioctl(fd, KVM_SET_REGS, &r) != 0) return fail_errno(errno, "KVM_SET_REGS: {}", std::strerror(errno));
  return {};
}

}  // namespace x86_64

std::string Vcpu::register_dump() const {
  kvm_regs r{};
  kvm_sregs s{};
  if (::ioctl(fd_.get(), KVM_GET_REGS, &r) != 0 || ::ioctl(fd_.get(), KVM_GET_SREGS, &s) != 0)
    return fmt::format("(registers unreadable: {})", std::strerror(errno));
  return fmt::format(
      "rip={:#018x} rsp={:#018x} rflags={:#x}\n"
      "rax={:#018x} rbx={:#018x} rcx={:#018x} rdx={:#018x}\n"
      "rsi={:#018x} rdi={:#018x} rbp={:#018x} r8 ={:#018x}\n"
      "cr0={:#x} cr2={:#x} cr3={:#x} cr4={:#x} efer={:#x} cs={:#x}",
      r.rip, r.rsp, r.rflags, r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.r8, s.cr0, s.cr2, s.cr3, s.cr4,
      s.efer, s.cs.selector);
}

}  // namespace nvgrace::vm
