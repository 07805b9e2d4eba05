// QEMU's x86 `q35` machine: the window as pci-hole64-size (R25).
#include <algorithm>

#include <fmt/format.h>

#include "nvgrace/common/size.hpp"
#include "nvgrace/plan/targets.hpp"

namespace nvgrace::plan {
namespace {

Result<Target::Window> window(const GuestPlan& plan, const TargetRequest&) {
  auto w = next_pow2(std::max(plan.mmio64_bytes, kQ35DefaultHole64));
  if (!w) return fail("64-bit MMIO need {:#x} has no power-of-two window", plan.mmio64_bytes);
  return Target::Window{*w, WindowKind::pci_hole64_size};
}

Result<TargetPlan> write(const GuestPlan& plan, const TargetRequest& req, TargetPlan out) {
  std::vector<std::string> machine{"-machine", "q35", "-global",
                                   fmt::format("q35-pcihost.pci-hole64-size={}", format_qemu_size(out.window))};
  return detail::write_qemu(plan, req, std::move(out), std::move(machine));
}

}  // namespace

extern const Target kTarget_qemu_q35{"qemu-q35", 20, "QEMU arguments", true, false, false, "", write, window};

}  // namespace nvgrace::plan
