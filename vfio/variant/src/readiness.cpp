#include "nvgrace/vfio/variant/readiness.hpp"

#include <algorithm>
#include <thread>

#include "nvgrace/pciemu/capabilities.hpp"

namespace nvgrace::vfio {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::duration_cast;
using std::chrono::milliseconds;

long long ms_since(Clock::time_point t) { return duration_cast<milliseconds>(Clock::now() - t).count(); }

}  // namespace

Result<void> wait_bar0_ready(const RegisterReader& bar0, const ReadinessOptions& opts) {
  const auto start = Clock::now();
  for (;;) {
    auto c2c = bar0(kC2cLinkStatusReg);
    if (!c2c) return fail(c2c.error().context("reading BAR0 C2C link status (R20)"));
    auto hbm = bar0(kHbmTrainingStatusReg);
    if (!hbm) return fail(hbm.error().context("reading BAR0 HBM training status (R20)"));
    if (*c2c == kStatusReady && *hbm == kStatusReady) return {};
    const auto waited = Clock::now() - start;
    if (waited >= opts.timeout)
      return fail_errno(ETIME,
                        "GPU not ready after {} ms: BAR0+{:#x} (C2C link) = {:#x}, BAR0+{:#x} (HBM training) = {:#x}; "
                        "expected {:#x} (R20)",
                        duration_cast<milliseconds>(waited).count(), kC2cLinkStatusReg, *c2c, kHbmTrainingStatusReg,
                        *hbm, kStatusReady);
    std::this_thread::sleep_for(std::min<Clock::duration>(opts.poll_interval, opts.timeout - waited));
  }
}

Result<void> wait_cxl_ready(const RegisterReader& config, unsigned dvsec, const ReadinessOptions& opts) {
  const std::uint64_t reg = dvsec + pciemu::kCxlRange1SizeLow;
  const auto poll = std::min<Clock::duration>(opts.poll_interval, pciemu::kCxlMemInfoValidTimeout / 10);
  auto wait_for = [&](std::uint32_t bit, const char* name, Clock::duration limit) -> Result<pciemu::CxlMemoryStatus> {
    const auto start = Clock::now();
    for (;;) {
      auto word = config(reg);
      if (!word) return fail(word.error().context("reading the CXL DVSEC Range 1 Size Low (R31)"));
      const auto status = pciemu::decode_cxl_range_size_low(*word);
      if (*word & bit) return status;
      if (Clock::now() - start >= limit)
        return fail_errno(ETIME, "GPU not ready after {} ms: CXL DVSEC at {:#x}, +{:#x} = {:#010x}: {} not set (R31)",
                          ms_since(start), dvsec, pciemu::kCxlRange1SizeLow, *word, name);
      std::this_thread::sleep_for(poll);
    }
  };
  auto valid = wait_for(pciemu::kCxlMemInfoValid, "MEM_INFO_VALID", pciemu::kCxlMemInfoValidTimeout);
  if (!valid) return fail(valid.error());
  auto active = wait_for(pciemu::kCxlMemActive, "MEM_ACTIVE", valid->active_timeout);
  if (!active) return fail(active.error());
  return {};
}

}  // namespace nvgrace::vfio
