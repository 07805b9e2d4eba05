// QEMU's arm `virt` machine: the window as highmem-mmio-size (R25).
#include <fmt/format.h>

#include "nvgrace/common/size.hpp"
#include "nvgrace/plan/targets.hpp"

namespace nvgrace::plan {
namespace {

Result<Target::Window> window(const GuestPlan& plan, const TargetRequest&) {
  return Target::Window{plan.highmem_mmio_size, WindowKind::highmem_mmio_size};
}

Result<TargetPlan> write(const GuestPlan& plan, const TargetRequest& req, TargetPlan out) {
  std::vector<std::string> machine{"-machine", fmt::format("virt,highmem-mmio-size={}", format_qemu_size(out.window))};
  return detail::write_qemu(plan, req, std::move(out), std::move(machine));
}

}  // namespace

extern const Target kTarget_qemu_virt{"qemu-virt", 10, "QEMU arguments", true, false, false, "", write, window};

}  // namespace nvgrace::plan
