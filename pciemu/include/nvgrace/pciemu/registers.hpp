// Registers of a Grace GPU's BAR0 that the variant reads (nvgrace-model.md
// R20): the C2C link and HBM training status, both 0xFF when the GPU's
// memory is ready. The CXL Device DVSEC's readiness word (R31) is in
// capabilities.hpp.
#pragma once

#include <cstdint>

namespace nvgrace::pciemu {

inline constexpr std::uint64_t kC2cLinkStatusReg = 0x1498;
inline constexpr std::uint64_t kHbmTrainingStatusReg = 0x200BC;
inline constexpr std::uint32_t kStatusReady = 0xFF;

}  // namespace nvgrace::pciemu
