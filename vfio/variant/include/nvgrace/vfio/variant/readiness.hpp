// Waiting for a Grace GPU to report its memory ready, over whatever reads its
// registers: the emulated device's, or a real device's through VFIO.
//   R20: BAR0+0x1498 (C2C link) and BAR0+0x200BC (HBM training) both 0xFF,
//        polled every poll interval, ETIME after the timeout (1 s / 30 s).
//   R31: with a CXL Device DVSEC, the word at DVSEC+0x1C instead:
//        MEM_INFO_VALID within 1 s, then MEM_ACTIVE within the timeout the
//        word itself encodes (1, 4, 16, 64 or 256 s).
// Thread-safety: reentrant; the readers decide.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>

#include "nvgrace/common/result.hpp"
#include "nvgrace/pciemu/registers.hpp"

namespace nvgrace::vfio {

// R20 (the registers are pciemu/registers.hpp's).
using pciemu::kC2cLinkStatusReg;
using pciemu::kHbmTrainingStatusReg;
using pciemu::kStatusReady;

// How long the variant waits, and how often it looks.
struct ReadinessOptions {
  std::chrono::milliseconds poll_interval{1000};  // R20: poll once a second
  std::chrono::milliseconds timeout{30000};       // R20: give up after 30 s
};

// Reads a 32-bit register; an error ends the wait with that error.
using RegisterReader = std::function<Result<std::uint32_t>(std::uint64_t offset)>;

// R20 over BAR0 offsets.
[[nodiscard]] Result<void> wait_bar0_ready(const RegisterReader& bar0, const ReadinessOptions& opts);

// R31 over config space: `dvsec` is the CXL Device DVSEC's offset; `config`
// reads config-space dwords. Polls at the poll interval, but at least ten
// times within the 1 s MEM_INFO_VALID window.
[[nodiscard]] Result<void> wait_cxl_ready(const RegisterReader& config, unsigned dvsec, const ReadinessOptions& opts);

}  // namespace nvgrace::vfio
