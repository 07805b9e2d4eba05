// arm64 KVM UAPI this project uses that older kernel headers lack. Debian
// bookworm's cross toolchain carries Linux 6.1 headers: the writable-masks
// ioctl arrived in 6.7, the writable implementation ID registers in 6.15 and
// the cacheable-PFNMAP query in 6.17. Each value is the kernel's
// (include/uapi/linux/kvm.h, arch/arm64/include/uapi/asm/kvm.h); the running
// kernel decides whether it answers, and the code says so when it does not.
#pragma once

#include <linux/kvm.h>
#include <sys/ioctl.h>

#include <cstdint>

namespace nvgrace::vm::aarch64::uapi {

inline constexpr long kCapArmVmIpaSize = KVM_CAP_ARM_VM_IPA_SIZE;  // 165
inline constexpr long kCapArmSve = KVM_CAP_ARM_SVE;                // 170
inline constexpr long kCapArmPsci02 = KVM_CAP_ARM_PSCI_0_2;        // 102
inline constexpr long kCapArmSupportedRegMaskRanges = 230;         // Linux 6.7
inline constexpr long kCapArmWritableImpIdRegs = 239;              // Linux 6.15
inline constexpr long kCapArmCacheablePfnmapSupported = 243;       // Linux 6.17 (R33)

// struct reg_mask_range and KVM_ARM_GET_REG_WRITABLE_MASKS (Linux 6.7).
struct RegMaskRange {
  std::uint64_t addr;  // -> std::uint64_t[kFeatureIdRangeSize]
  std::uint32_t range; // kFeatureIdRange
  std::uint32_t reserved[13];
};
static_assert(sizeof(RegMaskRange) == 64);
inline constexpr std::uint32_t kFeatureIdRange = 0;
inline constexpr unsigned kFeatureIdRangeSize = 3 * 8 * 8;
inline constexpr unsigned long kGetRegWritableMasks = _IOR(KVMIO, 0xb6, RegMaskRange);

}  // namespace nvgrace::vm::aarch64::uapi
