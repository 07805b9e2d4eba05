// What the architecture the tests are built for decides (R40): whether
// /dev/mem gives the GPU's memory as Normal memory, so that it may back the
// fake BARs. x86: yes (write-back); arm64: no (Device-nGnRnE). kArm64: the
// architecture whose KVM decides device-DAX memory's type by kernel version.
#pragma once

namespace test {
#if defined(__aarch64__)
inline constexpr bool kDevmemNormal = false;
inline constexpr bool kArm64 = true;
#else
inline constexpr bool kDevmemNormal = true;
inline constexpr bool kArm64 = false;
#endif
}  // namespace test
