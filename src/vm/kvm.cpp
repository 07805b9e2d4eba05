#include "vm/kvm.hpp"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

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

}  // namespace

Result<void> kvm_available() {
  vfio::UniqueFd fd(::open("/dev/kvm", O_RDWR | O_CLOEXEC));
  if (!fd) return fail_errno(errno, "/dev/kvm: {}", std::strerror(errno));
  const int api = ::ioctl(fd.get(), KVM_GET_API_VERSION, 0);
  if (api != KVM_API_VERSION) return fail_errno(ENOTSUP, "/dev/kvm speaks API {}, not {}", api, KVM_API_VERSION);
  return {};
}

Result<Kvm> Kvm::open() {
  if (auto ok = kvm_available(); !ok) return fail(ok.error());
  Kvm k;
  k.kvm_ = vfio::UniqueFd(::open("/dev/kvm", O_RDWR | O_CLOEXEC));
  const int vm = ::ioctl(k.kvm_.get(), KVM_CREATE_VM, 0);
  if (vm < 0) return fail_errno(errno, "KVM_CREATE_VM: {}", std::strerror(errno));
  k.vm_ = vfio::UniqueFd(vm);
  const int slots = ::ioctl(k.kvm_.get(), KVM_CHECK_EXTENSION, KVM_CAP_NR_MEMSLOTS);
  if (slots > 0) k.max_slots_ = static_cast<std::uint32_t>(slots);
  std::vector<std::uint8_t> buf(sizeof(kvm_cpuid2) + 256 * sizeof(kvm_cpuid_entry2));
  auto* cpuid = reinterpret_cast<kvm_cpuid2*>(buf.data());
  cpuid->nent = 256;
  if (::ioctl(k.kvm_.get(), KVM_GET_SUPPORTED_CPUID, cpuid) == 0)
    for (std::uint32_t i = 0; i < cpuid->nent; ++i)
      if (cpuid->entries[i].function == 0x80000008) k.phys_bits_ = cpuid->entries[i].eax & 0xFF;
  return k;
}

Result<void> Kvm::set_user_memory_region(std::uint32_t slot, std::uint64_t gpa, std::uint64_t size, std::uint64_t hva,
                                         std::uint32_t flags) {
  kvm_userspace_memory_region r{slot, flags, gpa, size, hva};
  ++ioctls_;
  if (::ioctl(vm_.get(), KVM_SET_USER_MEMORY_REGION, &r) != 0)
    return fail_errno(errno, "KVM_SET_USER_MEMORY_REGION slot {} at {:#x}+{:#x}: {}", slot, gpa, size,
                      std::strerror(errno));
  return {};
}

Result<Vcpu> Vcpu::create(const Kvm& kvm, const LongModeStart& start) {
  Vcpu v;
  const int fd = ::ioctl(kvm.vm_fd(), KVM_CREATE_VCPU, 0);
  if (fd < 0) return fail_errno(errno, "KVM_CREATE_VCPU: {}", std::strerror(errno));
  v.fd_ = vfio::UniqueFd(fd);
  const int size = ::ioctl(kvm.kvm_fd(), KVM_GET_VCPU_MMAP_SIZE, 0);
  if (size <= 0) return fail_errno(errno, "KVM_GET_VCPU_MMAP_SIZE: {}", std::strerror(errno));
  auto map = vfio::Mapping::map(fd, 0, static_cast<std::uint64_t>(size), 4096, PROT_READ | PROT_WRITE, MAP_SHARED);
  if (!map) return fail(map.error().context("mapping kvm_run"));
  v.run_map_ = std::move(*map);
  v.run_ = reinterpret_cast<kvm_run*>(v.run_map_.data());

  // CPUID as KVM supports it, so the guest sees its real address width.
  std::vector<std::uint8_t> buf(sizeof(kvm_cpuid2) + 256 * sizeof(kvm_cpuid_entry2));
  auto* cpuid = reinterpret_cast<kvm_cpuid2*>(buf.data());
  cpuid->nent = 256;
  if (::ioctl(kvm.kvm_fd(), KVM_GET_SUPPORTED_CPUID, cpuid) != 0 || ::ioctl(fd, KVM_SET_CPUID2, cpuid) != 0)
    return fail_errno(errno, "setting CPUID: {}", std::strerror(errno));

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
  return v;
}

Result<void> Vcpu::run() {
  if (::ioctl(fd_.get(), KVM_RUN, 0) != 0) return fail_errno(errno, "KVM_RUN: {}", std::strerror(errno));
  return {};
}

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
